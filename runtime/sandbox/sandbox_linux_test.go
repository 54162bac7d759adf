package sandbox

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): creates namespaces and mounts")
	}
}

// newSandboxDir returns a fresh pod directory whose sandbox is removed when
// the test ends, whether or not it passed.
func newSandboxDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() {
		if err := Remove(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

func TestCreateRemove(t *testing.T) {
	requireRoot(t)
	dir := newSandboxDir(t)
	cfg := Config{Dir: dir, Hostname: "web-0", ResolvConf: []byte("nameserver 10.96.0.10\n")}
	s, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range threadKinds {
		pin := map[string]string{"net": s.NetNS, "ipc": s.IPCNS, "uts": s.UTSNS}[k.name]
		if sameFile(t, pin, "/proc/self/ns/"+k.name) {
			t.Errorf("%s pin %s is the host's namespace", k.name, pin)
		}
	}
	if got := hostnameIn(t, s.UTSNS); got != "web-0" {
		t.Errorf("hostname in the pod UTS namespace = %q, want web-0", got)
	}
	if got := linksIn(t, s.NetNS); !slices.Equal(got, []string{"lo"}) || !loopbackUp(t, s.NetNS) {
		t.Errorf("pod netns links = %v (lo up: %v), want [lo] up", got, loopbackUp(t, s.NetNS))
	}
	if got := sysfsLinks(t, s.Sys); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("%s/class/net = %v, want only the pod's lo", s.Sys, got)
	}
	assertFS(t, s.Mqueue, mqueueMagic)
	assertFS(t, s.Sys, unix.SYSFS_MAGIC)
	if size := fsSize(t, s.Shm); size != DefaultShmSize {
		t.Errorf("/dev/shm size = %d, want %d", size, DefaultShmSize)
	}
	assertFile(t, s.Hostname, "web-0\n")
	assertFile(t, s.ResolvConf, "nameserver 10.96.0.10\n")
	assertFile(t, s.Hosts, string(hostsFile("web-0", nil)))

	again, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if !sameFile(t, again.NetNS, s.NetNS) || mountsUnder(t, dir) != 6 {
		t.Errorf("second Create changed the sandbox: %d mounts under %s, want 6", mountsUnder(t, dir), dir)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, dir); n != 0 {
		t.Errorf("%d mounts left under %s", n, dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Remove: %v", dir, err)
	}
	if err := Remove(dir); err != nil {
		t.Errorf("Remove of a removed sandbox: %v", err)
	}
}

// TestCreateCompletesPartialSandbox stands for an agent killed mid-Create:
// the pins exist but the mqueue mount does not.
func TestCreateCompletesPartialSandbox(t *testing.T) {
	requireRoot(t)
	dir := newSandboxDir(t)
	cfg := Config{Dir: dir, Hostname: "db-0"}
	s, err := Create(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(s.Mqueue, 0); err != nil {
		t.Fatal(err)
	}
	netBefore := inode(t, s.NetNS)
	if _, err := Create(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	assertFS(t, s.Mqueue, mqueueMagic)
	if inode(t, s.NetNS) != netBefore {
		t.Error("Create replaced an existing network namespace")
	}
}

func TestHostNetwork(t *testing.T) {
	requireRoot(t)
	dir := newSandboxDir(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Create(context.Background(), Config{Dir: dir, Hostname: host, HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.NetNS != "" || s.UTSNS != "" {
		t.Errorf("hostNetwork sandbox has net %q, uts %q pins; want none", s.NetNS, s.UTSNS)
	}
	if sameFile(t, s.IPCNS, "/proc/self/ns/ipc") {
		t.Error("hostNetwork sandbox shares the host IPC namespace")
	}
	hostLinks, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := sysfsLinks(t, s.Sys); len(got) != len(hostLinks) {
		t.Errorf("sysfs of a hostNetwork pod shows %v, want the host's %d links", got, len(hostLinks))
	}
}

// BenchmarkCreateRemove measures a full sandbox: three namespaces, lo up,
// four mounts, three files, and their removal.
func BenchmarkCreateRemove(b *testing.B) {
	requireRoot(b)
	base := b.TempDir()
	var create, remove time.Duration
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(base, "pod")
		start := time.Now()
		if _, err := Create(context.Background(), Config{Dir: dir, Hostname: "bench"}); err != nil {
			Remove(dir)
			b.Fatal(err)
		}
		mid := time.Now()
		if err := Remove(dir); err != nil {
			b.Fatal(err)
		}
		create += mid.Sub(start)
		remove += time.Since(mid)
	}
	b.ReportMetric(float64(create.Microseconds())/float64(b.N), "create-µs/op")
	b.ReportMetric(float64(remove.Microseconds())/float64(b.N), "remove-µs/op")
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	return inode(t, a) == inode(t, b)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func hostnameIn(t *testing.T, pin string) string {
	t.Helper()
	var name string
	err := onPrivateThread(func() error {
		if err := setnsPath(pin, nsUTS); err != nil {
			return err
		}
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		name = unix.ByteSliceToString(u.Nodename[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func netHandle(t *testing.T, pin string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func linksIn(t *testing.T, pin string) []string {
	t.Helper()
	links, err := netHandle(t, pin).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func loopbackUp(t *testing.T, pin string) bool {
	t.Helper()
	lo, err := netHandle(t, pin).LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return lo.Attrs().RawFlags&unix.IFF_UP != 0
}

func sysfsLinks(t *testing.T, sys string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(sys, "class", "net"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func assertFS(t *testing.T, path string, magic int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != magic {
		t.Errorf("%s: file system %#x, want %#x", path, st.Type, magic)
	}
}

func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

// mountsUnder counts the mounts at or below dir in this mount namespace.
func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// mqueueMagic is MQUEUE_MAGIC from linux/magic.h, which x/sys lacks.
const mqueueMagic = 0x19800202

// TestConcurrentCreate creates sandboxes in parallel, as the controller's
// pod workers do, and checks that none shares another's namespaces and that
// no agent thread is left in a pod namespace.
func TestConcurrentCreate(t *testing.T) {
	requireRoot(t)
	host := map[string]uint64{}
	for _, ns := range []string{"net", "ipc", "uts"} {
		host[ns] = inode(t, "/proc/self/ns/"+ns)
	}
	const n = 8
	boxes := make([]*Sandbox, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := newSandboxDir(t)
		wg.Go(func() {
			boxes[i], errs[i] = Create(context.Background(), Config{Dir: dir, Hostname: fmt.Sprintf("pod-%d", i)})
		})
	}
	wg.Wait()
	seen := map[uint64]int{}
	for i, s := range boxes {
		if errs[i] != nil {
			t.Fatalf("Create %d: %v", i, errs[i])
		}
		if got, want := hostnameIn(t, s.UTSNS), fmt.Sprintf("pod-%d", i); got != want {
			t.Errorf("sandbox %d: hostname %q, want %q", i, got, want)
		}
		ino := inode(t, s.NetNS)
		if j, dup := seen[ino]; dup {
			t.Errorf("sandboxes %d and %d share a network namespace", i, j)
		}
		seen[ino] = i
	}
	assertThreadsIn(t, host)
}

// assertThreadsIn checks that every thread of the process is in the
// namespaces whose inodes host maps by kind.
func assertThreadsIn(t *testing.T, host map[string]uint64) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		for ns, ino := range host {
			if inode(t, "/proc/self/task/"+task.Name()+"/ns/"+ns) != ino {
				t.Errorf("thread %s is not in the host %s namespace", task.Name(), ns)
			}
		}
	}
}

// TestSysctls checks that a sandbox's sysctls are set in its network and
// IPC namespaces and leave the host's values alone.
func TestSysctls(t *testing.T) {
	requireRoot(t)
	dir := newSandboxDir(t)
	sysctls := []Sysctl{
		{Path: "net/ipv4/ip_local_port_range", Value: "40000 40100"},
		{Path: "net/ipv4/tcp_keepalive_time", Value: "123"},
		{Path: "kernel/shm_rmid_forced", Value: "1"},
		{Path: "kernel/msgmax", Value: "4321"},
	}
	host := make(map[string]string)
	for _, s := range sysctls {
		host[s.Path] = readSysctl(t, s.Path)
	}
	s, err := Create(context.Background(), Config{Dir: dir, Hostname: "sysctl-pod", Sysctls: sysctls})
	if err != nil {
		t.Fatal(err)
	}
	inPod := make(map[string]string)
	err = onPrivateThread(func() error {
		if err := setnsPath(s.NetNS, nsNet); err != nil {
			return err
		}
		if err := setnsPath(s.IPCNS, nsIPC); err != nil {
			return err
		}
		for _, sc := range sysctls {
			b, err := os.ReadFile("/proc/sys/" + sc.Path)
			if err != nil {
				return err
			}
			inPod[sc.Path] = strings.Join(strings.Fields(string(b)), " ")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range sysctls {
		if inPod[sc.Path] != sc.Value {
			t.Errorf("%s in the pod = %q, want %q", sc.Path, inPod[sc.Path], sc.Value)
		}
	}
	for _, sc := range sysctls {
		if got := readSysctl(t, sc.Path); got != host[sc.Path] {
			t.Errorf("host %s changed from %q to %q", sc.Path, host[sc.Path], got)
		}
	}
}

// TestSysctlsRefused checks that a sandbox refuses sysctls beyond the
// pod's namespaces, whatever its caller let through.
func TestSysctlsRefused(t *testing.T) {
	requireRoot(t)
	for _, tt := range []struct {
		sysctl      Sysctl
		hostNetwork bool
	}{
		{Sysctl{Path: "kernel/panic", Value: "0"}, false},
		{Sysctl{Path: "net/../kernel/panic", Value: "0"}, false},
		{Sysctl{Path: "net/ipv4/tcp_syncookies", Value: "1"}, true},
		{Sysctl{Path: "net/ipv4/no_such_setting", Value: "1"}, false},
	} {
		dir := newSandboxDir(t)
		host := ""
		if tt.hostNetwork {
			var err error
			if host, err = os.Hostname(); err != nil {
				t.Fatal(err)
			}
		}
		cfg := Config{Dir: dir, Hostname: cmp.Or(host, "refused"), HostNetwork: tt.hostNetwork, Sysctls: []Sysctl{tt.sysctl}}
		if _, err := Create(context.Background(), cfg); err == nil {
			t.Errorf("Create accepted sysctl %s (hostNetwork %v)", tt.sysctl.Path, tt.hostNetwork)
		}
	}
}

func readSysctl(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}
