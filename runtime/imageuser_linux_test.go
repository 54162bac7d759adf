package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n"
	testGroup  = "root:x:0:\napp:x:1000:\nstaff:x:50:app,www\naudio:x:29:app\n"
)

func writeLayerFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResolveUser applies the image's User with runc's rules, then
// runAsUser and runAsGroup, to an image whose /etc/passwd is in its base
// layer and /etc/group in its top layer.
func TestResolveUser(t *testing.T) {
	base, top := t.TempDir(), t.TempDir()
	writeLayerFile(t, filepath.Join(base, "etc", "passwd"), testPasswd)
	writeLayerFile(t, filepath.Join(base, "etc", "group"), "root:x:0:\n")
	writeLayerFile(t, filepath.Join(top, "etc", "group"), testGroup)
	i := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		image     string
		pod, ctr  *corev1.SecurityContext
		suppl     []int64
		want      execUser
		wantError bool
	}{
		{name: "root by default", want: execUser{}},
		{name: "name", image: "app", want: execUser{UID: 1000, GID: 1000, Groups: []uint32{50, 29}}},
		{name: "uid with a passwd entry", image: "1000", want: execUser{UID: 1000, GID: 1000, Groups: []uint32{50, 29}}},
		{name: "uid without one", image: "4242", want: execUser{UID: 4242}},
		{name: "name:group", image: "app:staff", want: execUser{UID: 1000, GID: 50}},
		{name: "uid:gid", image: "4242:4343", want: execUser{UID: 4242, GID: 4343}},
		{name: "name:gid", image: "www:7", want: execUser{UID: 33, GID: 7}},
		{name: "unknown name", image: "nobody", wantError: true},
		{name: "unknown group", image: "app:nogroup", wantError: true},
		{name: "runAsUser replaces the image's user and group", image: "app:staff",
			ctr: &corev1.SecurityContext{RunAsUser: i(33)}, want: execUser{UID: 33, GID: 33, Groups: []uint32{50}}},
		{name: "runAsGroup replaces the group", image: "app",
			ctr: &corev1.SecurityContext{RunAsGroup: i(7)}, want: execUser{UID: 1000, GID: 7}},
		{name: "both", image: "app", ctr: &corev1.SecurityContext{RunAsUser: i(5), RunAsGroup: i(6)}, want: execUser{UID: 5, GID: 6}},
		{name: "pod level", pod: &corev1.SecurityContext{RunAsUser: i(1000), RunAsGroup: i(2000)}, want: execUser{UID: 1000, GID: 2000}},
		{name: "container wins over pod", pod: &corev1.SecurityContext{RunAsUser: i(1000), RunAsGroup: i(2000)},
			ctr: &corev1.SecurityContext{RunAsUser: i(7)}, want: execUser{UID: 7, GID: 2000}},
		{name: "supplementalGroups follow the image's", image: "app", suppl: []int64{44},
			want: execUser{UID: 1000, GID: 1000, Groups: []uint32{50, 29, 44}}},
	}
	for _, tt := range tests {
		pod := testPod()
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroups: tt.suppl}
		if tt.pod != nil {
			pod.Spec.SecurityContext.RunAsUser, pod.Spec.SecurityContext.RunAsGroup = tt.pod.RunAsUser, tt.pod.RunAsGroup
		}
		c := &corev1.Container{Name: "app", SecurityContext: tt.ctr}
		got, err := resolveUser([]string{base, top}, tt.image, pod, c)
		if tt.wantError {
			var se *reconcile.StartError
			if !errors.As(err, &se) || se.Reason != "CreateContainerError" {
				t.Errorf("%s: %v, want a CreateContainerError", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, *got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestResolveUserWithoutPasswd: numeric users need no /etc/passwd, names
// do.
func TestResolveUserWithoutPasswd(t *testing.T) {
	layers := []string{t.TempDir()}
	c := &corev1.Container{Name: "app"}
	if got, err := resolveUser(layers, "1000:1000", testPod(), c); err != nil || got.UID != 1000 || got.GID != 1000 {
		t.Errorf("1000:1000 = %+v, %v", got, err)
	}
	if _, err := resolveUser(layers, "app", testPod(), c); err == nil {
		t.Error("a user name resolved without /etc/passwd")
	}
}

// TestReadImageFileStaysInLayer: a symlink in a layer, absolute or up the
// tree, resolves inside that layer and never reads the host's files.
func TestReadImageFileStaysInLayer(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	writeLayerFile(t, outside, "host secret\n")
	for _, target := range []string{outside, "../../../../../../" + outside} {
		layer := t.TempDir()
		if err := os.MkdirAll(filepath.Join(layer, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(layer, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		got, err := readImageFile([]string{layer}, "etc/passwd")
		if err != nil || got != nil {
			t.Errorf("symlink to %s: read %q, %v; want nothing", target, got, err)
		}
	}
	layer := t.TempDir()
	writeLayerFile(t, filepath.Join(layer, "usr", "lib", "passwd"), testPasswd)
	if err := os.Symlink("/usr/lib", filepath.Join(layer, "etc")); err != nil {
		t.Fatal(err)
	}
	if got, err := readImageFile([]string{layer}, "etc/passwd"); err != nil || string(got) != testPasswd {
		t.Errorf("etc -> /usr/lib in the layer: read %q, %v", got, err)
	}
}

// TestReadImageFileLayers: the top layer's copy wins; a whiteout, an
// opaque directory or a file in place of the directory hides the copies
// below.
func TestReadImageFileLayers(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root: makes whiteouts (device nodes) and trusted.overlay xattrs")
	}
	base := t.TempDir()
	writeLayerFile(t, filepath.Join(base, "etc", "passwd"), "base\n")
	over := t.TempDir()
	writeLayerFile(t, filepath.Join(over, "etc", "passwd"), "over\n")
	whiteout := t.TempDir()
	if err := os.MkdirAll(filepath.Join(whiteout, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(whiteout, "etc", "passwd"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	opaque := t.TempDir()
	writeLayerFile(t, filepath.Join(opaque, "etc", "other"), "x\n")
	if err := unix.Setxattr(filepath.Join(opaque, "etc"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	unrelated := t.TempDir()
	writeLayerFile(t, filepath.Join(unrelated, "etc", "other"), "x\n")
	file := t.TempDir()
	writeLayerFile(t, filepath.Join(file, "etc"), "not a directory\n")
	tests := []struct {
		name   string
		layers []string
		want   string
	}{
		{"base only", []string{base}, "base\n"},
		{"top wins", []string{base, over}, "over\n"},
		{"unrelated layer on top", []string{base, unrelated}, "base\n"},
		{"whiteout", []string{base, whiteout}, ""},
		{"re-added after a whiteout", []string{base, whiteout, over}, "over\n"},
		{"opaque directory", []string{base, opaque}, ""},
		{"a file replaces the directory", []string{base, file}, ""},
	}
	for _, tt := range tests {
		got, err := readImageFile(tt.layers, "etc/passwd")
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}
