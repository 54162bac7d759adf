package reconcile

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Images makes a container's image present on the host before it starts.
type Images interface {
	// EnsureImage applies the container's imagePullPolicy (Kubernetes'
	// default when it is empty), pulling the image when the policy asks
	// for it, and returns the image for StartRequest.Image. A failure is
	// a *StartError with reason ErrImagePull, ErrImageNeverPull or
	// InvalidImageName; any other error counts as ErrImagePull. A pull
	// may take long: it returns when ctx is done. Calls for different
	// containers and pods run concurrently.
	EnsureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (string, error)
}

// The waiting reasons of image pulls, as kubelet names them.
const (
	reasonErrImagePull     = "ErrImagePull"
	reasonImagePullBackOff = "ImagePullBackOff"
)

// imageBackoffKey is the back-off key of a pod's pulls of an image, as
// kubelet keys its image pull back-off: separate from the container's
// restart back-off, shared by the pod's containers of the same image.
func imageBackoffKey(uid types.UID, image string) string {
	return string(uid) + "_" + image
}

// pullError makes err, returned by EnsureImage, a *StartError.
func pullError(err error) *StartError {
	var se *StartError
	if errors.As(err, &se) {
		return se
	}
	return &StartError{Reason: reasonErrImagePull, Err: err}
}

// pullBackOff turns a failed pull, once the sync that reported it is
// over, into kubelet's ImagePullBackOff for the rest of its back-off.
func pullBackOff(f *startFailure, image string) {
	if f != nil && f.reason == reasonErrImagePull {
		f.reason, f.message = reasonImagePullBackOff, fmt.Sprintf("Back-off pulling image %q", image)
	}
}
