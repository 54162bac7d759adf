package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// testLayers returns an image of three layers, base first: the busybox
// rootfs, a middle layer with files, and a top layer that deletes one of
// them (a whiteout), replaces a directory (opaque) and overrides a file.
func testLayers(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	mid, top := filepath.Join(dir, "mid"), filepath.Join(dir, "top")
	writeLayerFile(t, filepath.Join(mid, "data", "keep"), "mid\n")
	writeLayerFile(t, filepath.Join(mid, "data", "gone"), "deleted by top\n")
	writeLayerFile(t, filepath.Join(mid, "opq", "old"), "hidden by top\n")
	writeLayerFile(t, filepath.Join(mid, "data", "user1000"), "owned by 1000\n")
	if err := os.Chown(filepath.Join(mid, "data", "user1000"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	writeLayerFile(t, filepath.Join(mid, "etc", "motd"), "mid\n")
	writeLayerFile(t, filepath.Join(top, "etc", "motd"), "top\n")
	writeLayerFile(t, filepath.Join(top, "opq", "new"), "top\n")
	if err := unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(top, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(top, "data", "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	return []string{testRootfs, mid, top}
}

func writeLayerFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, data)
}

// layersScript prints what the container sees of testLayers, then writes
// through every layer.
const layersScript = `
echo keep=$(cat /data/keep)
test -e /data/gone && echo gone=visible
echo opq=$(ls /opq)
echo motd=$(cat /etc/motd)
echo owners=$(stat -c %u:%g /data/keep /bin/busybox /data/user1000)
echo changed >/data/keep
echo new >/opq/x
rm /etc/motd
echo done
`

// TestLayers runs a container on a multi-layer image in its own user
// namespace: the top layer's whiteout and opaque directory hide what the
// layers below hold, every layer's files keep their owners as seen inside
// (host root appears as root), and writes go to the upper layer only.
func TestLayers(t *testing.T) {
	pod := newTestPod(t, "layers-pod")
	layers := testLayers(t)
	spec := pod.spec(t, "sh", "-c", layersScript)
	spec.Lower = layers
	out := run(t, spec)
	for _, want := range []string{"keep=mid\n", "opq=new\n", "motd=top\n", "owners=0:0 0:0 1000:1000\n", "done\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "gone=visible") {
		t.Errorf("a whiteout in the top layer did not hide a file below:\n%s", out)
	}
	for _, f := range []struct{ layer, path, want string }{
		{layers[1], "data/keep", "mid\n"},
		{layers[1], "etc/motd", "mid\n"},
		{layers[2], "etc/motd", "top\n"},
	} {
		if got, err := os.ReadFile(filepath.Join(f.layer, f.path)); err != nil || string(got) != f.want {
			t.Errorf("layer file %s = %q, %v; want it untouched, %q", f.path, got, err, f.want)
		}
	}
	for _, p := range []string{"opq/x", "data/keep"} {
		if _, err := os.Stat(filepath.Join(layers[1], p)); p == "opq/x" && err == nil {
			t.Errorf("write reached layer: %s", p)
		}
		if _, err := os.Stat(filepath.Join(spec.Dir, "upper", p)); err != nil {
			t.Errorf("write not in the upper layer: %v", err)
		}
	}
}

// TestLayersFallback stacks 63 layers the way kernels before 6.8 need
// (attached under dir/lower, named in mount(2)'s lowerdir) and reads the
// result through the overlay: same order, whiteout and opaque directory as
// with lowerdir+, and nothing left attached.
func TestLayersFallback(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	layers := testLayers(t)
	// Empty layers on top: more than the 12 that would fit in fsconfig's
	// 255 bytes.
	for range 60 {
		layers = append(layers, t.TempDir())
	}
	spec := &Spec{ID: t.Name(), Lower: layers, Dir: dir}
	t.Cleanup(func() {
		if err := Cleanup(spec); err != nil {
			t.Error(err)
		}
	})
	upper, work, err := prepareUpper(spec)
	if err != nil {
		t.Fatal(err)
	}
	lowers, err := openLowers(spec.Lower, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(lowers)
	mfd, err := mountByPath(lowers, dir, upper, work)
	if err != nil {
		t.Fatal(err)
	}
	defer mfd.Close()
	read := func(p string) string {
		t.Helper()
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d/%s", mfd.Fd(), p), os.O_RDONLY, 0)
		if err != nil {
			return err.Error()
		}
		defer f.Close()
		b := make([]byte, 64)
		n, _ := f.Read(b)
		return string(b[:n])
	}
	for p, want := range map[string]string{"etc/motd": "top\n", "data/keep": "mid\n", "opq/new": "top\n"} {
		if got := read(p); got != want {
			t.Errorf("%s through the overlay = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"data/gone", "opq/old"} {
		var st unix.Stat_t
		if err := unix.Fstatat(int(mfd.Fd()), p, &st, 0); !errors.Is(err, unix.ENOENT) {
			t.Errorf("%s through the overlay: %v, want ENOENT (hidden by the top layer)", p, err)
		}
	}
	for i := range spec.Lower {
		if mounted(t, filepath.Join(dir, "lower", fmt.Sprint(i))) {
			t.Errorf("layer %d still attached after the overlay was created", i)
		}
	}
	if mounted(t, filepath.Join(dir, "merged")) {
		t.Error("the overlay is still attached on the host")
	}
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(info), " "+p+" ")
}

// TestTooManyLayers expects overlay's limit to be reported, not a mount
// error, and the fallback's own limit likewise.
func TestTooManyLayers(t *testing.T) {
	requireRoot(t)
	spec := &Spec{ID: t.Name(), Lower: make([]string, maxLayers+1), Dir: t.TempDir()}
	if _, err := mountRootfs(spec, "", "", nil); err == nil || !strings.Contains(err.Error(), "at most 500") {
		t.Errorf("mountRootfs with %d layers: %v, want the layer limit", len(spec.Lower), err)
	}
	lowers := make([]*os.File, 250)
	if _, err := mountByPath(lowers, spec.Dir, "/u", "/w"); err == nil || !strings.Contains(err.Error(), "Linux 6.8") {
		t.Errorf("fallback with 250 layers: %v, want its limit", err)
	}
}
