package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/image"
)

// fakeImages serves one image by its ID and records MarkUsed.
type fakeImages struct {
	img *image.Image

	mu   sync.Mutex
	used []string
}

func (f *fakeImages) Image(_ context.Context, ref string) (*image.Image, error) {
	if ref != f.img.ID {
		return nil, createError(os.ErrNotExist)
	}
	img := *f.img
	return &img, nil
}

func (f *fakeImages) MarkUsed(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.used = append(f.used, id)
	return nil
}

// TestRootImageConfig starts a container that sets nothing but its image
// from a two-layer image: the image's entrypoint and cmd run as its named
// user, in its working directory, with its environment under the pod's;
// the status's imageID is the repo digest, also after a restart of the
// runtime, and the image is marked used and reported in use.
func TestRootImageConfig(t *testing.T) {
	env := newTestEnv(t)
	top := t.TempDir()
	writeLayerFile(t, filepath.Join(top, "etc", "passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/srv:/bin/sh\n")
	writeLayerFile(t, filepath.Join(top, "etc", "group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
	if err := os.MkdirAll(filepath.Join(top, "srv"), 0o777); err != nil {
		t.Fatal(err)
	}
	fake := &fakeImages{img: &image.Image{
		ID:          "sha256:1111",
		RepoDigests: []string{"example.com/app@sha256:2222"},
		Layers:      []string{testRootfs, top},
		Config: image.Config{
			Entrypoint: []string{"/bin/sh", "-c"},
			Cmd:        []string{`echo "id=$(id -u):$(id -g):$(id -G) pwd=$(pwd) greeting=$GREETING lang=$LANG path=$PATH"`},
			Env:        []string{"PATH=/bin:/usr/bin", "LANG=C.UTF-8", "GREETING=from-image"},
			WorkingDir: "/srv",
			User:       "app",
		},
	}}
	env.opts.Images = fake
	r := env.runtime(t)
	ctx := context.Background()
	pod := newPod("imgcfg", corev1.Container{
		Name: "app", Image: "example.com/app:v1",
		Env: []corev1.EnvVar{{Name: "GREETING", Value: "from-pod"}},
	})
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	err := r.StartContainer(ctx, reconcile.StartRequest{UID: pod.UID, Container: "app", Image: "sha256:1111"})
	if err != nil {
		t.Fatal(err)
	}
	st := waitFor(t, r, pod.UID, "app to exit", exited("app"))
	if c := latest(st, "app"); c.ExitCode != 0 || c.ImageID != "example.com/app@sha256:2222" {
		t.Errorf("app: %+v, want exit 0 and the repo digest as imageID", c)
	}
	checkLog(t, env, pod.Namespace, pod.Name, pod.UID, "app", 0,
		"id=1000:1000:1000 50 pwd=/srv greeting=from-pod lang=C.UTF-8 path=/bin:/usr/bin\n")
	if !slices.Equal(fake.used, []string{"sha256:1111"}) {
		t.Errorf("MarkUsed calls %v, want the image's ID once", fake.used)
	}
	again, err := New(env.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if c := latest(podState(t, again, pod.UID), "app"); c.ImageID != "example.com/app@sha256:2222" {
		t.Errorf("after a runtime restart: imageID %q", c.ImageID)
	}
	if inUse, err := again.ImagesInUse(); err != nil || !inUse["sha256:1111"] {
		t.Errorf("ImagesInUse = %v, %v; want the image", inUse, err)
	}
}

// TestRootImageNoCommand: an image without entrypoint or cmd and a
// container without command is a CreateContainerError saying so.
func TestRootImageNoCommand(t *testing.T) {
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	c := shellContainer("app", "true")
	c.Command = nil
	pod := newPod("nocmd", c)
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	err := r.StartContainer(ctx, reconcile.StartRequest{UID: pod.UID, Container: "app"})
	var se *reconcile.StartError
	if !errors.As(err, &se) || se.Reason != "CreateContainerError" || !strings.Contains(err.Error(), "no command") {
		t.Errorf("start: %v, want a CreateContainerError saying there is no command", err)
	}
}
