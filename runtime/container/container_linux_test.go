package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/userns"
)

// TestNamespaces starts two containers in one pod and compares their
// namespaces from the host.
func TestNamespaces(t *testing.T) {
	pod := newTestPod(t, "ns-pod")
	a := startTest(t, pod.spec(t, "sleep", "100"))
	b := startTest(t, pod.spec(t, "sleep", "100"))
	pins := map[string]string{"net": pod.sb.NetNS, "ipc": pod.sb.IPCNS, "uts": pod.sb.UTSNS}
	for _, ns := range []string{"net", "ipc", "uts", "pid", "mnt", "user", "cgroup"} {
		na, nb, host := nsOf(t, a.Pid, ns), nsOf(t, b.Pid, ns), nsOf(t, os.Getpid(), ns)
		if pin, shared := pins[ns]; shared {
			if na != nb || na != nsLink(t, pin) {
				t.Errorf("%s: containers in %s and %s, want both in the pod's %s", ns, na, nb, nsLink(t, pin))
			}
			continue
		}
		if na == nb || na == host || nb == host {
			t.Errorf("%s: container a %s, b %s, host %s: want three different namespaces", ns, na, nb, host)
		}
	}
	want := fmt.Sprintf("0 %d 65536", pod.hostID)
	for _, f := range []string{"uid_map", "gid_map"} {
		if got := strings.Join(strings.Fields(readProc(t, a.Pid, f)), " "); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	status := readProc(t, a.Pid, "status")
	wantUID := fmt.Sprintf("Uid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d", pod.hostID)
	if !strings.Contains(status, wantUID+"\n") {
		t.Errorf("container root seen from the host: want %q in\n%s", wantUID, status)
	}
}

// TestHostView checks, from the host, what a running container holds: only
// stdio descriptors, a working directory in its own root.
func TestHostView(t *testing.T) {
	pod := newTestPod(t, "view-pod")
	p := startTest(t, pod.spec(t, "sleep", "100"))
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		fds = append(fds, e.Name())
	}
	if !slices.Equal(fds, []string{"0", "1", "2"}) {
		t.Errorf("container descriptors %v, want only 0 1 2", fds)
	}
	for _, link := range []string{"cwd", "root"} {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", p.Pid, link)); err != nil || got != "/" {
			t.Errorf("%s = %q, %v; want / of the container", link, got, err)
		}
	}
}

// TestInsideView checks what the container's own processes see.
func TestInsideView(t *testing.T) {
	pod := newTestPod(t, "inside-pod")
	script := `
echo pid=$$
for p in /proc/[0-9]*; do echo proc=${p#/proc/}; done
echo hostname=$(hostname)
echo kcore=$(wc -c </proc/keys)
echo firmware=$(ls -A /sys/firmware | wc -l)
echo net=$(ls /sys/class/net)
echo busybox=$(stat -c %u:%g /bin/busybox)
grep CapEff /proc/self/status
mkdir /sys/fs/x 2>/dev/null && echo sys=writable
echo 1 >/proc/sys/kernel/domainname 2>/dev/null && echo procsys=writable
echo 1 >/proc/sysrq-trigger 2>/dev/null && echo sysrq=writable
umount /proc/keys 2>/dev/null && echo unmasked
echo new >/newfile
echo extra >>/etc/passwd
`
	spec := pod.spec(t, "sh", "-c", script)
	out := run(t, spec)
	for _, want := range []string{
		"pid=1\n", "hostname=inside-pod\n", "kcore=0\n", "firmware=0\n", "net=lo\n",
		"busybox=0:0\n", "CapEff:\t00000000a80425fb\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	if procs := strings.Count(out, "proc="); procs != 1 {
		t.Errorf("container sees %d processes in /proc, want only its own:\n%s", procs, out)
	}
	for _, bad := range []string{"writable", "unmasked"} {
		if strings.Contains(out, bad) {
			t.Errorf("container output has %q:\n%s", bad, out)
		}
	}
	assertUpper(t, spec, pod.hostID)
}

// assertUpper checks that the container's writes went to its upper layer,
// owned by the pod's host IDs, and left the image untouched.
func assertUpper(t *testing.T, spec *Spec, hostID uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(spec.Dir, "upper", "newfile"), &st); err != nil {
		t.Fatalf("new file not in the upper layer: %v", err)
	}
	if st.Uid != hostID || st.Gid != hostID {
		t.Errorf("new file owned by %d:%d on the host, want %d:%d", st.Uid, st.Gid, hostID, hostID)
	}
	if _, err := os.Stat(filepath.Join(testRootfs, "newfile")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new file reached the image: %v", err)
	}
	passwd, err := os.ReadFile(filepath.Join(testRootfs, "etc", "passwd"))
	if err != nil || strings.Contains(string(passwd), "extra") {
		t.Errorf("image /etc/passwd changed (%v):\n%s", err, passwd)
	}
	copied, err := os.ReadFile(filepath.Join(spec.Dir, "upper", "etc", "passwd"))
	if err != nil || !strings.HasSuffix(string(copied), "extra\n") {
		t.Errorf("upper /etc/passwd (%v):\n%s", err, copied)
	}
}

func TestVolumes(t *testing.T) {
	pod := newTestPod(t, "vol-pod")
	ro, rw := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(ro, "data"), "ro data\n")
	for _, d := range []string{ro, rw} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(rw, "sub", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(rw, "sub", "dir"), 0o777); err != nil {
		t.Fatal(err)
	}
	spec := pod.spec(t, "sh", "-c", `
cat /ro/data
echo x >/ro/new 2>/dev/null && echo ro=writable
mount -o remount,rw /ro 2>/dev/null && echo remount=ok
mount -o remount,bind,rw /ro 2>/dev/null && echo remount-bind=ok
echo written >/rw/file
echo sub >/sub/file
`)
	spec.Mounts = append(spec.Mounts,
		Mount{Source: ro, Destination: "/ro", ReadOnly: true},
		Mount{Source: rw, Destination: "/rw"},
		Mount{Source: rw, SubPath: "sub/dir", Destination: "/sub"},
	)
	out := run(t, spec)
	if !strings.Contains(out, "ro data\n") || strings.Contains(out, "=ok") || strings.Contains(out, "writable") {
		t.Errorf("read-only volume: container output:\n%s", out)
	}
	for file, want := range map[string]string{"file": "written\n", "sub/dir/file": "sub\n"} {
		if got, err := os.ReadFile(filepath.Join(rw, file)); err != nil || string(got) != want {
			t.Errorf("volume file %s = %q, %v; want %q", file, got, err, want)
		}
	}
}

func TestSubPathEscape(t *testing.T) {
	pod := newTestPod(t, "subpath-pod")
	vol := t.TempDir()
	for name, target := range map[string]string{"abs": "/etc", "up": "../../../../etc", "in": "."} {
		if err := os.Symlink(target, filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"abs", "up", "up/passwd", "../x", "in/../../x"} {
		spec := pod.spec(t, "true")
		spec.Mounts = append(spec.Mounts, Mount{Source: vol, SubPath: sub, Destination: "/v"})
		if _, err := Start(context.Background(), spec); !errors.Is(err, unix.EXDEV) {
			t.Errorf("subPath %q: Start error %v, want EXDEV", sub, err)
		}
	}
	assertNoChildren(t)
	spec := pod.spec(t, "ls", "/v")
	spec.Mounts = append(spec.Mounts, Mount{Source: vol, SubPath: "in", Destination: "/v"})
	if out := run(t, spec); !strings.Contains(out, "abs") {
		t.Errorf("subPath through an in-volume symlink: ls /v = %q", out)
	}
}

func TestRunAsUser(t *testing.T) {
	pod := newTestPod(t, "user-pod")
	spec := pod.spec(t, "sh", "-c", "grep -E '^(Uid|Gid|Groups|CapEff)' /proc/self/status; pwd; touch /root/x 2>/dev/null && echo root-writable; true")
	spec.UID, spec.GID, spec.AdditionalGIDs = 1000, 1001, []uint32{2000, 2001}
	spec.Cwd = "/home/app"
	out := run(t, spec)
	for _, want := range []string{
		"Uid:\t1000\t1000\t1000\t1000\n", "Gid:\t1001\t1001\t1001\t1001\n",
		"Groups:\t2000 2001 \n", "CapEff:\t0000000000000000\n", "/home/app\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("runAsUser: output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "root-writable") {
		t.Errorf("user 1000 could write /root:\n%s", out)
	}
}

func TestNoNewPrivileges(t *testing.T) {
	pod := newTestPod(t, "nnp-pod")
	for _, nnp := range []bool{false, true} {
		spec := pod.spec(t, "grep", "^NoNewPrivs:", "/proc/self/status")
		spec.NoNewPrivileges = nnp
		want := "NoNewPrivs:\t0\n"
		if nnp {
			want = "NoNewPrivs:\t1\n"
		}
		if out := run(t, spec); out != want {
			t.Errorf("NoNewPrivileges=%v: container reports %q, want %q", nnp, out, want)
		}
	}
}

// TestInitFailures checks that failures inside the init stage come back as
// an InitError naming the problem, and leave no process and no layer behind.
func TestInitFailures(t *testing.T) {
	pod := newTestPod(t, "fail-pod")
	tests := []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"command not found", func(s *Spec) { s.Args = []string{"no-such-command", "arg"} },
			`exec: "no-such-command": executable file not found in $PATH`},
		{"not executable", func(s *Spec) { s.Args = []string{"/etc/passwd"} },
			"exec /etc/passwd: permission denied"},
		{"cwd is a file", func(s *Spec) { s.Cwd = "/etc/passwd/x" },
			"create working directory: mkdir /etc/passwd: not a directory"},
		{"unmapped user", func(s *Spec) { s.UID = 70000 },
			"set user 70000: outside the ID range of the pod's user namespace"},
	}
	for _, tt := range tests {
		spec := pod.spec(t, "true")
		tt.edit(spec)
		_, err := Start(context.Background(), spec)
		var ierr *InitError
		if !errors.As(err, &ierr) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Start error %v, want an InitError with %q", tt.name, err, tt.want)
		}
		assertNoChildren(t)
		if err := Cleanup(spec); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(spec.Dir); len(entries) != 0 {
			t.Errorf("%s: %s holds %v after Cleanup", tt.name, spec.Dir, entries)
		}
	}
}

func TestHostUsers(t *testing.T) {
	pod := newTestPod(t, "hostusers-pod")
	spec := pod.spec(t, "sh", "-c", "cat /proc/self/uid_map; echo new >/newfile; echo extra >>/etc/passwd")
	spec.UserNS = nil
	out := run(t, spec)
	if got := strings.Join(strings.Fields(out), " "); got != "0 0 4294967295" {
		t.Errorf("uid_map = %q, want the host's", got)
	}
	assertUpper(t, spec, 0)
}

// TestInitExeIsSealed checks the init stage runs from the sealed memfd,
// which nothing can write.
func TestInitExeIsSealed(t *testing.T) {
	pod := newTestPod(t, "sealed-pod")
	spec := pod.spec(t, "true")
	conn, cmd, err := launchInit(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	exe := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
	if got, err := os.Readlink(exe); err != nil || got != "/memfd:peapod-init (deleted)" {
		t.Errorf("init stage executable %q, %v; want the sealed memfd", got, err)
	}
	f, err := SealedExe()
	if err != nil {
		t.Fatal(err)
	}
	if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err != nil || seals != exeSeals {
		t.Errorf("seals %#x, %v; want %#x", seals, err, exeSeals)
	}
	if w, err := os.OpenFile(exe, os.O_WRONLY, 0); err == nil {
		_, err = w.Write([]byte("x"))
		w.Close()
		if err == nil {
			t.Error("wrote to the init stage's executable")
		}
	}
}

func nsOf(t *testing.T, pid int, ns string) string {
	t.Helper()
	return nsLink(t, fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
}

func nsLink(t *testing.T, path string) string {
	t.Helper()
	return strconv.FormatUint(inodeOf(t, path), 10)
}

func readProc(t *testing.T, pid int, file string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertNoChildren checks that a failed Start left no process behind.
func assertNoChildren(t *testing.T) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		children, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%s/children", task.Name()))
		if err == nil && len(strings.TrimSpace(string(children))) > 0 {
			t.Errorf("thread %s still has children %s", task.Name(), children)
		}
	}
}

// fakeCgroup records the placements asked of it, with the cgroup namespace
// each process was in at the time, and hands out fd as the cgroup2
// directory when it is set.
type fakeCgroup struct {
	fd     *os.File
	placed []int    // PIDs
	nsIno  []uint64 // their cgroup namespaces when placed
}

func (f *fakeCgroup) PlaceProcess(pid int) error {
	var st unix.Stat_t
	err := unix.Stat(fmt.Sprintf("/proc/%d/ns/cgroup", pid), &st)
	f.placed, f.nsIno = append(f.placed, pid), append(f.nsIno, st.Ino)
	return err
}

func (f *fakeCgroup) CgroupFD() (int, bool) {
	if f.fd == nil {
		return -1, false
	}
	return int(f.fd.Fd()), true
}

// TestCgroupFD starts a container straight into a cgroup2 directory
// (CLONE_INTO_CGROUP) and checks it was born there, in a cgroup namespace
// of its own, without a placement after the start.
func TestCgroupFD(t *testing.T) {
	pod := newTestPod(t, "cgroup2-pod")
	unified := "/sys/fs/cgroup/unified"
	if _, err := os.Stat(filepath.Join(unified, "cgroup.procs")); err != nil {
		unified = "/sys/fs/cgroup"
	}
	name := fmt.Sprintf("peapod-test-%d", os.Getpid())
	dir := filepath.Join(unified, name)
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("no usable cgroup2 hierarchy: %v", err)
	}
	fd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	spec := pod.spec(t, "sleep", "100")
	cg := &fakeCgroup{fd: fd}
	spec.Cgroup = cg
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	ownNS := nsOf(t, p.Pid, "cgroup") != nsOf(t, os.Getpid(), "cgroup")
	p.Signal(os.Kill)
	p.Wait()
	if err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(p.Pid) {
		t.Errorf("cgroup.procs = %q, %v; want the container's PID %d", procs, err, p.Pid)
	}
	if len(cg.placed) != 0 {
		t.Errorf("PlaceProcess(%v) called although the container was cloned into its cgroup", cg.placed)
	}
	if !ownNS {
		t.Error("container in the host's cgroup namespace, want its own")
	}
}

// TestCgroupPlacedBeforeConfig checks the order of a start without a
// cgroup2 directory: the init stage is placed once, while it is still in
// the shim's cgroup namespace, and creates its own afterwards.
func TestCgroupPlacedBeforeConfig(t *testing.T) {
	pod := newTestPod(t, "cgroup-pod")
	spec := pod.spec(t, "sleep", "100")
	cg := &fakeCgroup{}
	spec.Cgroup = cg
	p := startTest(t, spec)
	host := inodeOf(t, "/proc/self/ns/cgroup")
	if !slices.Equal(cg.placed, []int{p.Pid}) {
		t.Errorf("PlaceProcess called for %v, want once for the container's PID %d", cg.placed, p.Pid)
	}
	if len(cg.nsIno) == 1 && cg.nsIno[0] != host {
		t.Errorf("init stage placed in cgroup namespace %d, want the shim's %d: it left it before placement", cg.nsIno[0], host)
	}
	if got := inodeOf(t, fmt.Sprintf("/proc/%d/ns/cgroup", p.Pid)); got == host {
		t.Error("container in the host's cgroup namespace, want its own")
	}
}

// newTestCgroup creates the cgroup of container name in a pod cgroup under
// a parent unique to the test, on the host's hierarchies. Everything in
// them is killed and they are removed when the test ends.
func newTestCgroup(t testing.TB, name string) *cgroups.Container {
	t.Helper()
	requireRoot(t)
	parent := fmt.Sprintf("peapod-test-%d", time.Now().UnixNano())
	m, err := cgroups.New(cgroups.Options{Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		errs := []error{m.GC(nil)}
		// The parent is in every v1 hierarchy, or at the cgroup2 root.
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
		for _, d := range append(dirs, filepath.Join("/sys/fs/cgroup", parent)) {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			t.Errorf("remove cgroups: %v", err)
		}
	})
	pod, err := m.Pod("test", &corev1.Pod{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pod.Container(name, &corev1.Container{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCgroupPlacement starts containers in real cgroups, with a user
// namespace and without (hostUsers). Where the cgroups are v1 (no cgroup2
// directory to clone into), the init stage is placed once started: the
// container's first process must be in its cgroup in every hierarchy
// peapod manages, and see "/" in every hierarchy from inside.
func TestCgroupPlacement(t *testing.T) {
	pod := newTestPod(t, "cgroup-pod")
	for _, hostUsers := range []bool{false, true} {
		t.Run(fmt.Sprint("hostUsers=", hostUsers), func(t *testing.T) {
			cg := newTestCgroup(t, "app")
			spec := pod.spec(t, "sh", "-c", "cat /proc/self/cgroup && exec sleep 100")
			spec.Cgroup = cg
			if hostUsers {
				spec.UserNS = nil
			}
			p := startTest(t, spec)
			assertHostCgroups(t, p.Pid, cg)
			// Its own view, printed before it executed sleep.
			waitExec(t, p.Pid, "sleep")
			out, err := os.ReadFile(spec.Stdout.Name())
			if err != nil {
				t.Fatal(err)
			}
			if len(out) == 0 {
				t.Fatal("container printed no /proc/self/cgroup")
			}
			for line := range strings.Lines(string(out)) {
				if !strings.HasSuffix(line, ":/\n") {
					t.Errorf("container's /proc/self/cgroup shows %q, want / in every hierarchy:\n%s", line, out)
				}
			}
		})
	}
}

// assertHostCgroups checks that the host sees process pid in cg in every
// hierarchy peapod manages: each v1 hierarchy mounted under /sys/fs/cgroup
// and, when cg is cloned into, the cgroup2 one (a hybrid host leaves it).
func assertHostCgroups(t *testing.T, pid int, cg *cgroups.Container) {
	t.Helper()
	for line := range strings.Lines(readProc(t, pid, "cgroup")) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 {
			t.Fatalf("/proc/%d/cgroup: bad line %q", pid, line)
		}
		if f[1] == "" {
			if _, ok := cg.CgroupFD(); !ok {
				continue
			}
		} else if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(f[1], "name="), "cgroup.procs")); err != nil {
			continue // a v1 hierarchy mounted elsewhere, not peapod's
		}
		if f[2] != cg.Path() {
			t.Errorf("process %d in %q cgroup %s, want %s", pid, f[1], f[2], cg.Path())
		}
	}
}

// waitExec waits until process pid has executed cmd (argv[0] or, for a
// busybox applet, argv[1]).
func waitExec(t *testing.T, pid int, cmd string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		argv := strings.Split(readProc(t, pid, "cmdline"), "\x00")
		if slices.Contains(argv[:min(2, len(argv))], cmd) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d runs %q 30 s after start, want %s", pid, argv, cmd)
		}
	}
}

// TestCgroupPlacementFailure removes the container's cgroup before the
// start: placing the init stage fails, and nothing may be left running.
func TestCgroupPlacementFailure(t *testing.T) {
	pod := newTestPod(t, "cgroup-fail-pod")
	cg := newTestCgroup(t, "gone")
	// On v2 this also drops the CgroupFD, so the move is tried there too.
	if err := cg.Remove(); err != nil {
		t.Fatal(err)
	}
	spec := pod.spec(t, "sleep", "100")
	spec.Cgroup = cg
	p, err := Start(context.Background(), spec)
	if err == nil {
		p.Signal(os.Kill)
		p.Wait()
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start into a removed cgroup: %v, want ErrNotExist", err)
	}
	assertNoChildren(t)
}

// TestHostNetworkPod runs a container of a hostNetwork pod: it shares the
// host's network and UTS namespaces and still gets its own IPC namespace.
func TestHostNetworkPod(t *testing.T) {
	requireRoot(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() {
		if err := sandbox.Remove(dir); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	sb, err := sandbox.Create(context.Background(), sandbox.Config{Dir: dir, Hostname: host, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	pod := &testPod{sb: sb, hostID: userns.DefaultRange.Start}
	p := startTest(t, pod.spec(t, "sleep", "100"))
	for ns, wantHost := range map[string]bool{"net": true, "uts": true, "ipc": false} {
		if got := nsOf(t, p.Pid, ns) == nsOf(t, os.Getpid(), ns); got != wantHost {
			t.Errorf("%s namespace shared with the host: %v, want %v", ns, got, wantHost)
		}
	}
}

func TestMissingVolumeSource(t *testing.T) {
	pod := newTestPod(t, "missing-pod")
	spec := pod.spec(t, "true")
	spec.Mounts = append(spec.Mounts, Mount{Source: filepath.Join(t.TempDir(), "absent"), Destination: "/data"})
	if _, err := Start(context.Background(), spec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start with a missing volume source: %v, want ErrNotExist", err)
	}
	assertNoChildren(t)
}

// TestParentDeathKillsContainer kills a container's parent and expects the
// container to die with it, for root and for a runAsUser container (whose
// user switch clears the parent-death signal the init stage must re-arm).
func TestParentDeathKillsContainer(t *testing.T) {
	pod := newTestPod(t, "orphan-pod")
	for _, uid := range []uint32{0, 1000} {
		spec := pod.spec(t, "sleep", "100")
		spec.UID = uid
		spec.Stdout, spec.Stderr = nil, nil
		data, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		parent := exec.Command(os.Args[0], "-test.run=^$")
		parent.Env = append(os.Environ(), parentEnv+"="+string(data))
		parent.Stderr = os.Stderr
		out, err := parent.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := parent.Start(); err != nil {
			t.Fatal(err)
		}
		var pid int
		_, err = fmt.Fscan(out, &pid)
		parent.Process.Kill()
		parent.Wait()
		if err != nil {
			t.Fatalf("uid %d: read container PID: %v", uid, err)
		}
		if !dies(pid, 30*time.Second) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("uid %d: container %d outlived its parent", uid, pid)
		}
	}
}

// dies reports whether pid exits (is gone or a zombie) within timeout.
func dies(pid int, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			return true
		}
	}
	return false
}

// TestLowerWithoutIdmapSupport expects a clear error, not a container whose
// files all belong to nobody, when the image's file system cannot be
// idmapped (ramfs here; tmpfs before Linux 6.3).
func TestLowerWithoutIdmapSupport(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	if err := unix.Mount("ramfs", lower, "ramfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(lower, unix.MNT_DETACH) })
	holder := exec.Command("sleep", "100")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(userns.DefaultRange.Start), Size: userns.RangeSize}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(userns.DefaultRange.Start), Size: userns.RangeSize}},
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
	})
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	f, err := openLower(lower, ns)
	if err == nil {
		f.Close()
		t.Fatal("openLower on ramfs succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "does not support idmapped mounts") || !errors.Is(err, unix.EINVAL) {
		t.Errorf("openLower on ramfs: %v", err)
	}
}

// TestConcurrentStarts starts containers of two pods in parallel: each must
// land in its own pod's namespaces, and no thread of ours may stay in one.
func TestConcurrentStarts(t *testing.T) {
	pods := []*testPod{newTestPod(t, "par-a"), newTestPod(t, "par-b")}
	host := map[string]uint64{}
	for _, ns := range []string{"net", "ipc", "uts"} {
		host[ns] = inodeOf(t, "/proc/self/ns/"+ns)
	}
	const n = 6
	specs := make([]*Spec, n)
	for i := range specs {
		specs[i] = pods[i%2].spec(t, "sleep", "100")
	}
	procs := make([]*Process, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { procs[i], errs[i] = Start(context.Background(), specs[i]) })
	}
	wg.Wait()
	for i, p := range procs {
		if errs[i] != nil {
			t.Errorf("Start %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() {
			p.Signal(os.Kill)
			p.Wait()
		})
		if got, want := nsOf(t, p.Pid, "net"), nsLink(t, pods[i%2].sb.NetNS); got != want {
			t.Errorf("container %d in netns %s, want its pod's %s", i, got, want)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		for ns, ino := range host {
			if inodeOf(t, "/proc/self/task/"+task.Name()+"/ns/"+ns) != ino {
				t.Errorf("thread %s left in a pod %s namespace", task.Name(), ns)
			}
		}
	}
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestIDMappedVolume mounts a host directory owned by host root: idmapped,
// container root owns it, reads its 0600 file, and its writes land on the
// host as root's.
func TestIDMappedVolume(t *testing.T) {
	pod := newTestPod(t, "idmap-pod")
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "secret"), "s3cret\n")
	if err := os.Chmod(filepath.Join(vol, "secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := pod.spec(t, "sh", "-c", "stat -c %u:%g /vol; cat /vol/secret; echo new >/vol/new")
	spec.Mounts = append(spec.Mounts, Mount{Source: vol, Destination: "/vol", IDMap: true})
	if out := run(t, spec); out != "0:0\ns3cret\n" {
		t.Errorf("container output %q, want the volume owned by root and its secret", out)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(vol, "new"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("file written through the idmapped volume: owner %d:%d, %v; want 0:0", st.Uid, st.Gid, err)
	}

	spec = pod.spec(t, "true")
	spec.UserNS = nil
	spec.Mounts = append(spec.Mounts, Mount{Source: vol, Destination: "/vol", IDMap: true})
	if _, err := Start(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "IDMap needs a user namespace") {
		t.Errorf("IDMap without a user namespace: Start error %v", err)
	}
}
