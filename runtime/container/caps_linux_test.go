package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCapabilities checks every capability set of the container's command,
// as /proc/self/status shows them, for root and a non-root user: root gets
// the computed set as bounding, permitted and effective set; a non-root
// user only the bounding set; inheritable and ambient stay empty.
func TestCapabilities(t *testing.T) {
	pod := newTestPod(t, "caps-pod")
	last, err := lastCap()
	if err != nil {
		t.Fatal(err)
	}
	all := uint64(allCaps) & (1<<(last+1) - 1)
	const netAdmin, sysAdmin, chown, netBind = 1 << 12, 1 << 21, 1 << 0, 1 << 10
	tests := []struct {
		name      string
		uid       uint32
		add, drop []string
		want      uint64
	}{
		{"root default", 0, nil, nil, uint64(defaultCaps)},
		{"root add NET_ADMIN drop CHOWN", 0, []string{"NET_ADMIN"}, []string{"CAP_CHOWN"}, uint64(defaultCaps)&^chown | netAdmin},
		{"root drop ALL", 0, nil, []string{"ALL"}, 0},
		{"root drop ALL add NET_BIND_SERVICE", 0, []string{"NET_BIND_SERVICE"}, []string{"ALL"}, netBind},
		{"root add ALL", 0, []string{"ALL"}, nil, all},
		{"user default", 1000, nil, nil, uint64(defaultCaps)},
		{"user add SYS_ADMIN", 1000, []string{"sys_admin"}, nil, uint64(defaultCaps) | sysAdmin},
		{"user drop ALL", 1000, nil, []string{"ALL"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := pod.spec(t, "grep", "^Cap", "/proc/self/status")
			spec.UID, spec.GID = tt.uid, tt.uid
			spec.CapAdd, spec.CapDrop = tt.add, tt.drop
			prm := tt.want
			if tt.uid != 0 {
				prm = 0
			}
			want := fmt.Sprintf("CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\n",
				0, prm, prm, tt.want, 0)
			if got := run(t, spec); got != want {
				t.Errorf("capabilities:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestAddedCapsStayInUserNamespace checks that CAP_SYS_ADMIN and
// CAP_NET_ADMIN, added, act on what the container's user namespace owns
// (its mount namespace) but not on the pod's UTS and network namespaces,
// which the host's user namespace owns.
func TestAddedCapsStayInUserNamespace(t *testing.T) {
	pod := newTestPod(t, "sysadmin-pod")
	spec := pod.spec(t, "sh", "-c", `
mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo mount=ok
hostname other 2>/dev/null && echo hostname=changed
ip link add dummy0 type dummy 2>/dev/null && echo link=added
ip link set lo down 2>/dev/null && echo lo=down
echo 1 >/proc/sys/net/ipv4/ip_forward 2>/dev/null && echo sysctl=written
true`)
	spec.CapAdd = []string{"SYS_ADMIN", "NET_ADMIN"}
	out := run(t, spec)
	if !strings.Contains(out, "mount=ok\n") {
		t.Errorf("CAP_SYS_ADMIN does not allow a mount in the container's own mount namespace:\n%s", out)
	}
	for _, bad := range []string{"hostname=", "link=", "lo=", "sysctl="} {
		if strings.Contains(out, bad) {
			t.Errorf("added capabilities reached the pod's namespaces (%s):\n%s", bad, out)
		}
	}
}

// TestReadOnlyRootfs checks that readOnlyRootFilesystem refuses writes to
// the rootfs (EROFS) but not to the mounts on it.
func TestReadOnlyRootfs(t *testing.T) {
	pod := newTestPod(t, "rorootfs-pod")
	data, tmp := t.TempDir(), t.TempDir()
	for _, d := range []string{data, tmp} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	spec := pod.spec(t, "sh", "-c", `
for f in /new /etc/new /root/new /data/new /tmp/new /dev/shm/new; do
	if err=$( (echo x >>$f) 2>&1); then echo "$f=ok"; else echo "$f=$err"; fi
done
mkdir /newdir 2>/dev/null && echo mkdir=ok
awk '$5 == "/etc/hosts" { split($6, o, ","); print "hosts=" o[1] }' /proc/self/mountinfo
true`)
	spec.ReadOnlyRootfs = true
	spec.Mounts = append(spec.Mounts,
		Mount{Source: data, Destination: "/data"},
		Mount{Source: tmp, Destination: "/tmp"},
	)
	out := run(t, spec)
	for _, want := range []string{"/data/new=ok", "/tmp/new=ok", "/dev/shm/new=ok", "hosts=rw"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"/new", "/etc/new", "/root/new"} {
		if !strings.Contains(out, f+"=sh: can't create "+f+": Read-only file system\n") {
			t.Errorf("write to %s: want EROFS:\n%s", f, out)
		}
	}
	if strings.Contains(out, "mkdir=ok") {
		t.Errorf("mkdir in the read-only root succeeded:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "new")); err != nil {
		t.Errorf("volume write did not reach the host: %v", err)
	}
}
