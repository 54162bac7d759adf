package manifests

import (
	"fmt"
	"strings"
	"testing"
)

func TestHostPathWarnings(t *testing.T) {
	const unprivileged = "container root is an unprivileged host user"
	tests := []struct {
		name      string
		path      string
		subPath   string
		readOnly  bool
		hostUsers bool
		// want are the parts of the only warning, in order; nil wants none.
		want []string
	}{
		{name: "writable /", path: "/", want: []string{"mounts host directory / writable: " + unprivileged,
			"write the host's world-writable files and directories", "see the host's processes and their command lines",
			"connect to the host's world-writable sockets", "open the host's world-writable devices",
			"read every world-readable file", "or set readOnly: true"}},
		{name: "read-only / still exposes processes, sockets and devices", path: "/", readOnly: true,
			want: []string{"mounts host directory / read-only", "see the host's processes", "sockets", "devices", "read every world-readable file"}},
		{name: "writable /etc", path: "/etc/", want: []string{"mounts host directory /etc writable", "write the host's world-writable files"}},
		{name: "read-only /etc is quiet", path: "/etc", readOnly: true},
		{name: "writable /lib64", path: "/lib64", want: []string{"mounts host directory /lib64 writable"}},
		{name: "read-only /proc", path: "/proc", readOnly: true, want: []string{"/proc read-only", "see the host's processes"}},
		{name: "under /proc", path: "/proc/1", readOnly: true, want: []string{"/proc/1 read-only", "see the host's processes"}},
		{name: "writable /sys/fs/cgroup", path: "/sys/fs/cgroup", want: []string{"/sys/fs/cgroup writable"}},
		{name: "read-only /sys is quiet", path: "/sys", readOnly: true},
		{name: "read-only /var reaches /var/run", path: "/var", readOnly: true, want: []string{"/var read-only", "sockets"}},
		{name: "read-only /run", path: "/run", readOnly: true, want: []string{"/run read-only", "sockets"}},
		{name: "/dev/shm", path: "/dev/shm", want: []string{"/dev/shm writable", "write the host's", "devices"}},
		{name: "subPath into a system directory", path: "/", subPath: "etc", want: []string{"mounts host directory /etc writable"}},
		{name: "subPath out of one", path: "/", subPath: "srv/data"},
		{name: "an application directory is quiet", path: "/var/lib/app"},
		{name: "a socket under /run is quiet", path: "/run/app.sock"},
		{name: "hostUsers: true, writable", path: "/usr", hostUsers: true,
			want: []string{"/usr writable into a container in the host's user namespace (hostUsers: true), where root is host root: it can change anything there"}},
		{name: "hostUsers: true, read-only", path: "/etc", readOnly: true, hostUsers: true,
			want: []string{"/etc read-only into a container in the host's user namespace", "read every file there, secrets included"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := fmt.Sprintf("  hostUsers: %t\n  volumes: [{name: host, hostPath: {path: %q}}]\n", tt.hostUsers, tt.path)
			mount := fmt.Sprintf("    volumeMounts: [{name: host, mountPath: /host, subPath: %q, readOnly: %t}]\n", tt.subPath, tt.readOnly)
			pod := decodeOne(t, manifest(spec, mount))
			if tt.want == nil {
				if len(pod.Warnings) != 0 {
					t.Errorf("warnings: %q, want none", pod.Warnings)
				}
				return
			}
			if len(pod.Warnings) != 1 {
				t.Fatalf("warnings: %q, want one", pod.Warnings)
			}
			w := pod.Warnings[0]
			if !strings.HasPrefix(w, "spec.containers[0].volumeMounts[0]: ") {
				t.Errorf("warning %q does not name the mount", w)
			}
			rest := w
			for _, part := range tt.want {
				i := strings.Index(rest, part)
				if i < 0 {
					t.Fatalf("warning %q: %q missing or out of order", w, part)
				}
				rest = rest[i+len(part):]
			}
		})
	}
}

// Each container that mounts the volume writable gets its own warning; a
// read-only mount of the same volume does not.
func TestHostPathWarningsPerMount(t *testing.T) {
	data := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n" +
		"  volumes: [{name: etc, hostPath: {path: /etc}}]\n  containers:\n" +
		"  - {name: a, image: rootfs:/i, volumeMounts: [{name: etc, mountPath: /e, readOnly: true}]}\n" +
		"  - {name: b, image: rootfs:/i, volumeMounts: [{name: etc, mountPath: /e}]}\n"
	pod := decodeOne(t, data)
	if len(pod.Warnings) != 1 || !strings.HasPrefix(pod.Warnings[0], "spec.containers[1].volumeMounts[0]: mounts host directory /etc writable") {
		t.Errorf("warnings: %q, want one for container b", pod.Warnings)
	}
}
