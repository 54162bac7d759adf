package runtime

import (
	"cmp"
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/image"
)

// ImageSource gives StartContainer the image a container runs.
type ImageSource interface {
	// Image returns the local image ref names: a reference EnsureImage
	// returned, or a container's image as written. An image that is not
	// on the host is a *reconcile.StartError.
	Image(ctx context.Context, ref string) (*image.Image, error)
	// MarkUsed records that a container started from the image with ID id,
	// for garbage collection's oldest-use-first order.
	MarkUsed(id string) error
}

// Images is where the agent's containers get their images: it implements
// reconcile.Images (pull policy, making an image present), ImageSource
// (the image a start uses) and the agent's image GC.
//
// It serves rootfs: images, which are present exactly when their
// directory exists and are never pulled. Registry references and the
// archive transports are the job of package image's Store; until it is
// wired in here, they fail to pull with a message saying so. The zero
// value is ready to use and safe for concurrent use.
type Images struct{}

// EnsureImage implements reconcile.Images. It applies the container's
// imagePullPolicy, defaulted as Kubernetes does when empty, and returns
// the reference StartContainer is to run.
func (Images) EnsureImage(_ context.Context, _ *corev1.Pod, c *corev1.Container) (string, error) {
	ref, err := image.ParseReference(c.Image)
	if err != nil {
		return "", &reconcile.StartError{Reason: "InvalidImageName", Err: err}
	}
	policy := pullPolicy(c.ImagePullPolicy, ref)
	present, err := rootfsPresent(ref)
	switch {
	case present:
		return ref.String(), nil
	case policy == corev1.PullNever:
		return "", &reconcile.StartError{Reason: "ErrImageNeverPull",
			Err: fmt.Errorf("Container image %q is not present with pull policy of Never", c.Image)}
	case ref.Transport == image.RootFS:
		return "", &reconcile.StartError{Reason: "ErrImagePull",
			Err: fmt.Errorf("%w (a rootfs: image is never pulled: create the directory)", err)}
	default:
		return "", &reconcile.StartError{Reason: "ErrImagePull",
			Err: fmt.Errorf("image %q: this build of peapod runs rootfs: images only", c.Image)}
	}
}

// pullPolicy returns the container's imagePullPolicy, or Kubernetes'
// default: Always for a registry image with no tag or the tag latest (and
// no digest), IfNotPresent otherwise. The file transports are never
// floating: an archive is imported once, and again under Always.
func pullPolicy(p corev1.PullPolicy, ref image.Reference) corev1.PullPolicy {
	switch {
	case p != "":
		return p
	case ref.Floating():
		return corev1.PullAlways
	default:
		return corev1.PullIfNotPresent
	}
}

// rootfsPresent reports whether ref is a rootfs: image whose directory
// exists, and why not.
func rootfsPresent(ref image.Reference) (bool, error) {
	if ref.Transport != image.RootFS {
		return false, nil
	}
	fi, err := os.Stat(ref.Path)
	switch {
	case err != nil:
		return false, fmt.Errorf("image %s: %w", ref, err)
	case !fi.IsDir():
		return false, fmt.Errorf("image %s: not a directory", ref)
	}
	return true, nil
}

// Image implements ImageSource.
func (Images) Image(_ context.Context, s string) (*image.Image, error) {
	ref, err := image.ParseReference(s)
	if err != nil {
		return nil, createError(err)
	}
	present, err := rootfsPresent(ref)
	if !present {
		return nil, createError(cmp.Or(err, fmt.Errorf("image %q is not on the host", s)))
	}
	return &image.Image{Names: []string{ref.String()}, Layers: []string{ref.Path}}, nil
}

// MarkUsed implements ImageSource; a rootfs: image has no ID to mark.
func (Images) MarkUsed(string) error { return nil }

// GC removes images no container uses while the disk under the root
// passes highPct, down to lowPct, and returns the bytes freed. rootfs:
// directories belong to the user and are never removed.
func (Images) GC(context.Context, func(id string) bool, int, int) (int64, error) { return 0, nil }

// imageID is a container status's imageID for img: its first repo digest
// (registry/repo@sha256:...), else its ID, else the reference it was
// started by (a rootfs: image).
func imageID(img *image.Image, ref string) string {
	switch {
	case len(img.RepoDigests) > 0:
		return img.RepoDigests[0]
	case img.ID != "":
		return img.ID
	default:
		return ref
	}
}
