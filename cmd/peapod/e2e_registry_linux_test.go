package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
)

// testRegistry is Debian's docker-registry (distribution 2.8) on a free
// loopback port, started by the test and killed at its end.
type testRegistry struct {
	host string
	cmd  *exec.Cmd
}

func startTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("needs docker-registry (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"+
		"storage: {filesystem: {rootdirectory: %s/data}}\nhttp: {addr: %s}\n", dir, host)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &testRegistry{host: host, cmd: exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	eventually(t, "docker-registry answers", 30*time.Second, func() error {
		resp, err := http.Get("http://" + host + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return r
}

// stop kills the registry; later pulls find nothing listening.
func (r *testRegistry) stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// dirLayer makes a layer of the tree under dir (regular files, directories
// and symlinks, owned by root), plus extra files.
func dirLayer(t *testing.T, dir string, extra map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if dir != "" {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || path == dir {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			link := ""
			if fi.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(path); err != nil {
					return err
				}
			}
			hdr, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				return err
			}
			hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = strings.TrimPrefix(path, dir+"/"), 0, 0, "", ""
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(tw, f)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for path, content := range extra {
		if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// pushImage pushes a two-layer image built from the busybox rootfs, with an
// entrypoint, a cmd, an env and a working directory, and returns its
// reference and manifest digest.
func pushImage(t *testing.T, r *testRegistry, rootfs, repoTag string) (string, string) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		dirLayer(t, rootfs, nil),
		dirLayer(t, "", map[string]string{"srv/hello": "hello from the image's second layer\n"}))
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo pwd=`pwd`; echo greeting=$GREETING; cat hello; exec sleep 100000"},
		Env:        []string{"PATH=/bin:/sbin", "GREETING=from-the-image"},
		WorkingDir: "/srv",
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.String(), digest.String()
}

// TestImageFromRegistry runs a pod from an image in a real registry on
// loopback: the image's entrypoint and cmd run with its env and working
// directory, the status names the image's digest, and once the registry
// is gone the image still starts pods from the store.
func TestImageFromRegistry(t *testing.T) {
	a := newRootAgent(t)
	rootfs, err := busyboxRootfs()
	if err != nil {
		t.Fatal(err)
	}
	reg := startTestRegistry(t)
	ref, digest := pushImage(t, reg, rootfs, "team/app:v1")
	a.start()

	manifest := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  terminationGracePeriodSeconds: 1\n"+
			"  containers:\n  - {name: c, image: %q}\n", name, ref)
	}
	// The status names the image once the runtime has listed the attempt.
	withImageID := func(p *corev1.Pod) error {
		if err := running(p); err != nil {
			return err
		}
		if p.Status.ContainerStatuses[0].ImageID == "" {
			return fmt.Errorf("no imageID yet")
		}
		return nil
	}
	a.writeManifest("app.yaml", manifest("app"))
	pod := a.waitPod("default/app", "running", 60*time.Second, withImageID)
	out := rtWaitLog(a, []string{"second layer"}, "app")
	for _, want := range []string{"pwd=/srv\n", "greeting=from-the-image\n", "hello from the image's second layer\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the container's log lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	cs := pod.Status.ContainerStatuses[0]
	if wantID := reg.host + "/team/app@" + digest; cs.Image != ref || cs.ImageID != wantID {
		t.Errorf("status image %q, imageID %q; want %q, %q", cs.Image, cs.ImageID, ref, wantID)
	}
	out, code := runPeapod(t, "image", "ls", "--root", a.cfg.Root)
	if code != 0 || !strings.Contains(out, reg.host+"/team/app") {
		t.Errorf("peapod image ls: exit %d, want the image listed:\n%s", code, out)
	}

	// With the registry gone, a tagged image (IfNotPresent) starts from
	// the store.
	reg.stop()
	a.writeManifest("again.yaml", manifest("again"))
	again := a.waitPod("default/again", "running", 60*time.Second, withImageID)
	if got := again.Status.ContainerStatuses[0].ImageID; got != cs.ImageID {
		t.Errorf("imageID %q from the store, want %q", got, cs.ImageID)
	}

	// imagePullPolicy: Always needs the registry: the pull fails with its
	// error, and the pod waits.
	a.writeManifest("always.yaml", strings.Replace(manifest("always"), "image: ", "imagePullPolicy: Always, image: ", 1))
	a.waitPod("default/always", "ErrImagePull or ImagePullBackOff", 60*time.Second, func(p *corev1.Pod) error {
		if len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("no status")
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		if w == nil || (w.Reason != "ErrImagePull" && w.Reason != "ImagePullBackOff") {
			return fmt.Errorf("state %+v", p.Status.ContainerStatuses[0].State)
		}
		return nil
	})
}
