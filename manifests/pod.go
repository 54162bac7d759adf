package manifests

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations the decoder sets on every pod. The first two are kubelet's
// static-pod annotations; the last records which file a pod came from, so a
// restarted agent can tell a pod whose file is broken from one whose file
// was deleted.
const (
	AnnotationSource   = "kubernetes.io/config.source"
	AnnotationHash     = "kubernetes.io/config.hash"
	AnnotationManifest = "peapod.io/manifest"
)

// Pod is one pod decoded from a manifest document, defaulted and validated.
type Pod struct {
	// Pod is the decoded object: defaults applied, metadata.uid set to the
	// content hash, the annotations above set. Treat it as read-only: it is
	// shared by every snapshot that holds it.
	Pod *corev1.Pod
	// File is the manifest's absolute path, Doc the document's index in it
	// (from 0).
	File string
	Doc  int
	// Warnings name fields peapod accepts but ignores, and settings it
	// honours that weaken isolation (a writable hostPath of /etc).
	Warnings []string
	// Held is set by the Source when the file no longer decodes and this is
	// its last good version, kept running until the file is fixed or removed.
	Held bool
}

// Key returns "namespace/name", the pod's identity for the user.
func (p *Pod) Key() string { return p.Pod.Namespace + "/" + p.Pod.Name }

// UID returns the content hash that identifies this version of the pod.
func (p *Pod) UID() types.UID { return p.Pod.UID }

// Snapshot is the desired state read from the directory at one moment.
type Snapshot struct {
	// Pods holds every pod to run, sorted by key; at most one per key.
	Pods []*Pod
	// Errors holds one entry per file that failed, and one per pod that was
	// dropped because an earlier file already names it.
	Errors []FileError
	// RefusedDir is the manifest directory when it is refused for its
	// owner or mode: the pods running from it are kept, as a refused
	// file's are.
	RefusedDir string
}

// FileError is a problem with one manifest file. Err's message names the
// file already (decode errors and os errors do), so Error returns it as is.
type FileError struct {
	File string
	Err  error
}

func (e FileError) Error() string { return e.Err.Error() }
