package reconcile

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Runtime runs pod sandboxes and their containers. The controller never
// calls two methods for the same pod UID at once, except StartContainer for
// different containers of a pod, which it calls concurrently; calls for
// different pods run concurrently. Every method is idempotent: a retry after a partial
// failure finishes the job or reports the same error.
type Runtime interface {
	// ListPods reports every pod the runtime knows, including pods created
	// by an earlier agent process. It is cheap enough to call on every resync.
	ListPods(ctx context.Context) ([]*PodState, error)
	// CreateSandbox creates the pod's shared namespaces, its shim and its
	// per-pod files. It returns the existing sandbox if there is one for the UID.
	CreateSandbox(ctx context.Context, pod *corev1.Pod) (*PodState, error)
	// StartContainer starts attempt req.Attempt of one container of a pod
	// whose sandbox exists. A failure that the user must fix is returned as
	// a *StartError.
	StartContainer(ctx context.Context, req StartRequest) error
	// StopContainer sends SIGTERM to the container, waits up to grace, then
	// kills everything left in its pid namespace.
	StopContainer(ctx context.Context, uid types.UID, name string, grace time.Duration) error
	// RemovePod stops every container (as StopContainer, concurrently) and
	// removes everything the sandbox holds: processes, shim, mounts,
	// namespace pins, cgroups, upper dirs, emptyDirs, the user-ID range.
	// Removing an unknown UID is not an error.
	RemovePod(ctx context.Context, uid types.UID, grace time.Duration) error
	// Events delivers hints that a pod changed on its own (a container
	// exited, a shim died). The channel is never closed; a hint may be
	// dropped when the reader is slow, so the controller also resyncs.
	Events() <-chan types.UID
}

// Network gives a sandbox its network. Both methods are idempotent and keyed
// by the pod UID.
type Network interface {
	// Setup connects the pod's network namespace and returns its addresses,
	// the IPv4 one first. Calling it again returns the same addresses.
	Setup(ctx context.Context, pod *corev1.Pod, netnsPath string) ([]string, error)
	// Teardown releases everything Setup acquired for the pod.
	Teardown(ctx context.Context, pod *corev1.Pod) error
}

// StartRequest names one container attempt to start.
type StartRequest struct {
	UID       types.UID
	Container string
	// Attempt is the container's restart count: 0 for the first run.
	Attempt int
	// PodIPs are the pod's addresses, for /etc/hosts and the status.podIP
	// fieldRef; empty for hostNetwork pods.
	PodIPs []string
	// Image is the image to run, as Images.EnsureImage returned it (an
	// image ID or a reference the runtime finds locally); empty means the
	// container's image as written.
	Image string
}

// PodState is what the runtime observes of one pod sandbox.
type PodState struct {
	// Pod is the object the sandbox was created from (its status is unused).
	Pod *corev1.Pod
	// Ready reports that the sandbox's namespaces and shim are in place.
	Ready bool
	// NetNSPath is the pinned network namespace; empty for hostNetwork pods.
	NetNSPath string
	// PodIPs are the addresses recorded by the last StartContainer.
	PodIPs    []string
	CreatedAt time.Time
	// Containers holds the attempts the runtime still knows, at least the
	// latest and the one before it for every container that has run.
	Containers []ContainerState
}

// UID returns the pod's UID.
func (s *PodState) UID() types.UID { return s.Pod.UID }

// ContainerPhase is the runtime state of one container attempt.
type ContainerPhase string

// The phases of a container attempt.
const (
	ContainerCreated ContainerPhase = "Created"
	ContainerRunning ContainerPhase = "Running"
	ContainerExited  ContainerPhase = "Exited"
)

// ContainerState is one attempt of one container.
type ContainerState struct {
	Name    string
	Attempt int
	// ID is unique across attempts and pods: "peapod://<uid>/<name>/<attempt>".
	ID    string
	Image string
	// ImageID is the image the attempt runs, as a container status's
	// imageID: registry/repo@sha256:..., an image ID, or a rootfs:
	// reference.
	ImageID string
	Phase   ContainerPhase
	// PID is the host PID of the container's main process while it runs.
	PID        int
	StartedAt  time.Time
	FinishedAt time.Time
	// ExitCode follows the shell convention: 128+signal for a signal death.
	ExitCode int
	Signal   int
	// Reason is kubelet's: "Completed", "Error", "OOMKilled".
	Reason  string
	Message string
}

// StartError is a container start failure the user must fix, reported as
// the container's Waiting reason (kubelet's CreateContainerError and friends).
type StartError struct {
	// Reason is a CamelCase word: CreateContainerError, RunContainerError,
	// CreateContainerConfigError, ErrImagePull.
	Reason string
	Err    error
}

func (e *StartError) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }
