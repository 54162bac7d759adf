package runtime

import (
	"cmp"
	"context"
	"errors"
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
// rootfs: images are present exactly when their directory exists and are
// never pulled; every other image lives in Store. Safe for concurrent use.
type Images struct {
	// Store holds registry and archive images; nil serves rootfs: images
	// only, and fails other pulls with a message saying so.
	Store *image.Store
}

// EnsureImage implements reconcile.Images. It applies the container's
// imagePullPolicy, defaulted as Kubernetes does when empty, and returns
// the reference StartContainer is to run: the directory of a rootfs:
// image, the ID of any other, so that a start runs exactly the image
// checked here even if its tag moves meanwhile.
func (im Images) EnsureImage(ctx context.Context, _ *corev1.Pod, c *corev1.Container) (string, error) {
	ref, err := image.ParseReference(c.Image)
	if err != nil {
		return "", &reconcile.StartError{Reason: "InvalidImageName", Err: err}
	}
	policy := pullPolicy(c.ImagePullPolicy, ref)
	if ref.Transport == image.RootFS {
		return ensureRootfs(ref, policy, c.Image)
	}
	switch {
	case im.Store == nil && policy == corev1.PullNever:
		return "", neverPulled(c.Image)
	case im.Store == nil:
		return "", &reconcile.StartError{Reason: "ErrImagePull",
			Err: fmt.Errorf("image %q: this agent has no image store: it runs rootfs: images only", c.Image)}
	}
	if policy != corev1.PullAlways {
		img, err := im.Store.Get(ref.String())
		switch {
		case err == nil:
			return im.use(img), nil
		case !errors.Is(err, image.ErrNotFound):
			return "", &reconcile.StartError{Reason: "ErrImagePull", Err: err}
		case policy == corev1.PullNever:
			return "", neverPulled(c.Image)
		}
	}
	img, err := im.Store.Pull(ctx, ref, image.PullOptions{})
	if err != nil {
		return "", &reconcile.StartError{Reason: "ErrImagePull", Err: err}
	}
	return im.use(img), nil
}

// use marks img used now, so that garbage collection, which removes the
// images used longest ago first, spares it between its pull and the start
// that mounts it, and returns its ID.
func (im Images) use(img *image.Image) string {
	_ = im.Store.MarkUsed(img.ID)
	return img.ID
}

func ensureRootfs(ref image.Reference, policy corev1.PullPolicy, written string) (string, error) {
	present, err := rootfsPresent(ref)
	switch {
	case present:
		return ref.String(), nil
	case policy == corev1.PullNever:
		return "", neverPulled(written)
	default:
		return "", &reconcile.StartError{Reason: "ErrImagePull",
			Err: fmt.Errorf("%w (a rootfs: image is never pulled: create the directory)", err)}
	}
}

func neverPulled(written string) error {
	return &reconcile.StartError{Reason: "ErrImageNeverPull",
		Err: fmt.Errorf("Container image %q is not present with pull policy of Never", written)}
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

// Image implements ImageSource: s is what EnsureImage returned (a rootfs:
// reference or an image ID) or a container's image as written.
func (im Images) Image(_ context.Context, s string) (*image.Image, error) {
	if ref, err := image.ParseReference(s); err == nil && ref.Transport == image.RootFS {
		present, err := rootfsPresent(ref)
		if !present {
			return nil, createError(cmp.Or(err, fmt.Errorf("image %q is not on the host", s)))
		}
		return &image.Image{Names: []string{ref.String()}, Layers: []string{ref.Path}}, nil
	}
	if im.Store == nil {
		return nil, createError(fmt.Errorf("image %q: this agent has no image store", s))
	}
	img, err := im.Store.Get(s)
	if err != nil {
		return nil, createError(err)
	}
	return img, nil
}

// MarkUsed implements ImageSource; a rootfs: image has no ID to mark.
func (im Images) MarkUsed(id string) error {
	if im.Store == nil || id == "" {
		return nil
	}
	return im.Store.MarkUsed(id)
}

// GC removes images no container uses while the disk under the store
// passes highPct, down to lowPct, and returns the bytes freed. rootfs:
// directories belong to the user and are never removed.
func (im Images) GC(ctx context.Context, inUse func(id string) bool, highPct, lowPct int) (int64, error) {
	if im.Store == nil {
		return 0, nil
	}
	return im.Store.GC(ctx, inUse, highPct, lowPct)
}

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
