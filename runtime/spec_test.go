package runtime

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/sandbox"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "b", "EMPTY": "", "MONEY": "$$"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"$(A)", "a"},
		{"x$(A)y$(B)z", "xaybz"},
		{"$(A)$(A)", "aa"},
		{"$(EMPTY)x", "x"},
		{"$(NOPE)", "$(NOPE)"},
		{"$(NOPE)$(A)", "$(NOPE)a"},
		{"$$(A)", "$(A)"},
		{"$$$(A)", "$a"},
		{"$$$$(A)", "$$(A)"},
		{"$$", "$"},
		{"$", "$"},
		{"a$", "a$"},
		{"$A", "$A"},
		{"$(A", "$(A"},
		{"$(", "$("},
		{"$()", "$()"},
		{"$(A$(B))", "$(A$(B))"},
		{"$(MONEY)", "$$"},
		{"$$$$$$$(MONEY)", "$$$$$"},
		{"${A}", "${A}"},
	}
	for _, tt := range tests {
		if got, ok := expand(tt.in, lookup, maxArgLen); !ok || got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1ObjectMeta(),
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "rootfs:/img"}},
		},
	}
}

func TestResolveEnv(t *testing.T) {
	pod := testPod()
	c := &corev1.Container{Name: "app", Env: []corev1.EnvVar{
		{Name: "LATER_REF", Value: "$(FIRST)"},
		{Name: "FIRST", Value: "one"},
		{Name: "SECOND", Value: "$(FIRST)-two $$(FIRST) $(UNDEFINED)"},
		{Name: "NAME", ValueFrom: fieldRef("metadata.name")},
		{Name: "NS", ValueFrom: fieldRef("metadata.namespace")},
		{Name: "UID", ValueFrom: fieldRef("metadata.uid")},
		{Name: "IP", ValueFrom: fieldRef("status.podIP")},
		{Name: "IPS", ValueFrom: fieldRef("status.podIPs")},
		{Name: "LABEL", ValueFrom: fieldRef("metadata.labels['app']")},
		{Name: "FIRST", Value: "override"},
		{Name: "PATH", Value: "/bin"},
	}}
	env, err := resolveEnv(pod, c, []string{"10.0.0.5", "fd00::5"}, &expansion{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"PATH=/bin",
		"HOSTNAME=web",
		"LATER_REF=$(FIRST)",
		"FIRST=override",
		"SECOND=one-two $(FIRST) $(UNDEFINED)",
		"NAME=web",
		"NS=default",
		"UID=1234",
		"IP=10.0.0.5",
		"IPS=10.0.0.5,fd00::5",
		"LABEL=web-app",
	}
	if diff := cmp.Diff(want, env.environ()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestResolveEnvUnsupported(t *testing.T) {
	for _, ev := range []corev1.EnvVar{
		{Name: "X", ValueFrom: fieldRef("spec.hostIP")},
		{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}},
	} {
		_, err := resolveEnv(testPod(), &corev1.Container{Name: "app", Env: []corev1.EnvVar{ev}}, nil, &expansion{})
		var se *reconcile.StartError
		if !errors.As(err, &se) || se.Reason != "CreateContainerConfigError" {
			t.Errorf("env %+v: err = %v, want CreateContainerConfigError", ev, err)
		}
	}
}

func TestCheckHostPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		path    string
		typ     corev1.HostPathType
		wantErr bool
	}{
		{dir, corev1.HostPathUnset, false},
		{missing, corev1.HostPathUnset, true},
		{dir, corev1.HostPathDirectory, false},
		{file, corev1.HostPathDirectory, true},
		{missing, corev1.HostPathDirectory, true},
		{file, corev1.HostPathFile, false},
		{dir, corev1.HostPathFile, true},
		{missing, corev1.HostPathFile, true},
		{sock, corev1.HostPathSocket, false},
		{file, corev1.HostPathSocket, true},
		{"/dev/null", corev1.HostPathCharDev, false},
		{file, corev1.HostPathCharDev, true},
		{"/dev/null", corev1.HostPathBlockDev, true},
		{file, corev1.HostPathDirectoryOrCreate, true},
		{sock, corev1.HostPathFileOrCreate, true},
		{dir, "Bogus", true},
	}
	for _, tt := range tests {
		err := checkHostPath(tt.path, tt.typ)
		if (err != nil) != tt.wantErr {
			t.Errorf("checkHostPath(%s, %q) = %v, want error %v", filepath.Base(tt.path), tt.typ, err, tt.wantErr)
		}
		var se *reconcile.StartError
		if err != nil && (!errors.As(err, &se) || se.Reason != "CreateContainerError") {
			t.Errorf("checkHostPath(%s, %q) = %v, want a CreateContainerError", filepath.Base(tt.path), tt.typ, err)
		}
	}
}

func TestCheckHostPathCreates(t *testing.T) {
	old := setUmask(0o077)
	defer setUmask(old)
	dir := t.TempDir()
	newDir := filepath.Join(dir, "a", "b")
	if err := checkHostPath(newDir, corev1.HostPathDirectoryOrCreate); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(newDir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("created dir: %v, %v", fi.Mode(), err)
	}
	newFile := filepath.Join(dir, "f")
	if err := checkHostPath(newFile, corev1.HostPathFileOrCreate); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(newFile); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("created file: %v, %v", fi.Mode(), err)
	}
	// Existing paths of the right type are accepted as they are.
	if err := checkHostPath(newDir, corev1.HostPathDirectoryOrCreate); err != nil {
		t.Fatal(err)
	}
	if err := checkHostPath(newFile, corev1.HostPathFileOrCreate); err != nil {
		t.Fatal(err)
	}
}

func TestBuildSpec(t *testing.T) {
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{SupplementalGroups: []int64{44}}
	c := &corev1.Container{
		Name: "app", Image: "rootfs:/img",
		Command:    []string{"/bin/sh", "-c"},
		Args:       []string{"echo $(GREETING) $(POD)", "$$(GREETING)"},
		WorkingDir: "/work",
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "hi"},
			{Name: "POD", ValueFrom: fieldRef("metadata.name")},
		},
		VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/data", SubPath: "sub", ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: new(false)},
	}
	sb := sandbox.Layout("/run/peapod/pods/1234", pod.Spec.HostNetwork)
	spec, err := buildSpec(&specInput{
		pod: pod, c: c, req: reconcile.StartRequest{UID: pod.UID, Container: "app", Attempt: 3},
		image: &image.Image{Layers: []string{"/img"}}, user: &execUser{Groups: []uint32{44}},
		dir:    "/var/lib/peapod/pods/1234/containers/app/3",
		userNS: &container.IDMap{HostID: 1 << 30, Size: 65536}, sandbox: sb,
		volumes: map[string]string{"data": "/var/lib/peapod/pods/1234/volumes/data"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &container.Spec{
		ID:              "peapod://1234/app/3",
		Args:            []string{"/bin/sh", "-c", "echo hi web", "$(GREETING)"},
		Env:             []string{"PATH=" + defaultPath, "HOSTNAME=web", "GREETING=hi", "POD=web"},
		Cwd:             "/work",
		AdditionalGIDs:  []uint32{44},
		NoNewPrivileges: true,
		Lower:           []string{"/img"},
		Dir:             "/var/lib/peapod/pods/1234/containers/app/3",
		UserNS:          &container.IDMap{HostID: 1 << 30, Size: 65536},
		NetNS:           sb.NetNS, IPCNS: sb.IPCNS, UTSNS: sb.UTSNS,
		Mounts: []container.Mount{
			{Source: sb.Hosts, Destination: "/etc/hosts"},
			{Source: sb.Hostname, Destination: "/etc/hostname"},
			{Source: sb.ResolvConf, Destination: "/etc/resolv.conf"},
			{Source: sb.Shm, Destination: "/dev/shm"},
			{Source: sb.Mqueue, Destination: "/dev/mqueue"},
			{Source: sb.Sys, Destination: "/sys", ReadOnly: true},
			{Source: "/var/lib/peapod/pods/1234/volumes/data", Destination: "/data", ReadOnly: true, SubPath: "sub"},
		},
	}
	if diff := cmp.Diff(want, spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}

	c.Command, c.Args = nil, nil
	_, err = buildSpec(&specInput{pod: pod, c: c, sandbox: sb, image: &image.Image{}, user: &execUser{}})
	var se *reconcile.StartError
	if !errors.As(err, &se) || se.Reason != "CreateContainerError" || !strings.Contains(err.Error(), "no command") {
		t.Errorf("a container without command and an image without entrypoint: %v, want CreateContainerError", err)
	}
}

func TestDropLoopbackNameservers(t *testing.T) {
	in := "# c\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nsearch example.com\noptions edns0\n"
	want := "# c\nnameserver 192.0.2.1\nsearch example.com\noptions edns0\n"
	if got := string(dropLoopbackNameservers([]byte(in))); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func metav1ObjectMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "1234", Labels: map[string]string{"app": "web-app"}}
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func setUmask(m int) int { return unix.Umask(m) }

// TestExpansionBounded checks that $(VAR) expansion stops at the kernel's
// limits, naming the field, before it builds the oversized string: a 100 KiB
// value referenced 3000 times would otherwise take 300 MB.
func TestExpansionBounded(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	refs := strings.Repeat("$(BIG)", 3000)
	for _, tt := range []struct {
		name string
		c    corev1.Container
		want string
	}{
		{"one argument", corev1.Container{Name: "app", Env: []corev1.EnvVar{{Name: "BIG", Value: big}}, Args: []string{refs}},
			"args[0]: with $(VAR) expanded it exceeds 131072 bytes"},
		{"one variable", corev1.Container{Name: "app", Env: []corev1.EnvVar{{Name: "BIG", Value: big}, {Name: "HUGE", Value: refs}}},
			"env HUGE: with $(VAR) expanded it exceeds 131072 bytes"},
		{"all together", corev1.Container{Name: "app", Env: []corev1.EnvVar{{Name: "BIG", Value: big}}, Command: slices.Repeat([]string{"$(BIG)"}, 30)},
			"the command and environment exceed 2097152 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			x := &expansion{}
			_, err := resolveEnv(testPod(), &tt.c, nil, x)
			if err == nil {
				_, err = commandLine(&tt.c, image.Config{}, x)
			}
			goruntime.ReadMemStats(&after)
			var se *reconcile.StartError
			if !errors.As(err, &se) || se.Reason != "CreateContainerConfigError" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want CreateContainerConfigError with %q", err, tt.want)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Errorf("expansion allocated %d MiB before refusing", grew>>20)
			}
		})
	}
}
