package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/shim"
	"github.com/peapod/peapod/runtime/userns"
)

// testRootfs is a busybox image shared by the root tests of this binary.
var testRootfs string

func TestMain(m *testing.M) {
	// The test binary is also the shim and the container init stage: the
	// runtime re-executes it (Options.Exe) and so does the shim.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case shim.Command:
			shim.Main()
		case container.InitArg:
			container.RunInit()
		case container.ExecArg:
			container.RunExec()
		}
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "peapod-rootfs-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		testRootfs = filepath.Join(dir, "rootfs")
		if out, err := exec.Command("../hack/mkrootfs.sh", testRootfs).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build test rootfs: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): creates namespaces, mounts, cgroups and containers")
	}
}

// testEnv is a Runtime on temporary directories and its own cgroup parent.
type testEnv struct {
	opts Options
	base string
}

// newTestEnv makes the directories and registers the cleanup that removes
// every pod and the cgroup parent, before anything is created.
func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	requireRoot(t)
	// A short base keeps the shim socket path under the 108-byte limit.
	base, err := os.MkdirTemp("", "pp-")
	if err != nil {
		t.Fatal(err)
	}
	parent := "peapod-test-" + filepath.Base(base)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{base: base, opts: Options{
		StateDir: filepath.Join(base, "state"), RootDir: filepath.Join(base, "root"), LogDir: filepath.Join(base, "log"),
		UsernsRange: userns.DefaultRange,
		Cgroups:     &cgroups.Options{Parent: parent},
		ResolvConf:  func(*corev1.Pod) []byte { return []byte("nameserver 192.0.2.53\n") },
		Log:         slog.New(slog.NewTextHandler(&testWriter{t: t}, nil)),
		Exe:         exe,
	}}
	t.Cleanup(func() { env.cleanup(t, parent) })
	return env
}

// cleanup removes every pod a test left, then the test's cgroup parent and
// directories.
func (e *testEnv) cleanup(t testing.TB, parent string) {
	opts := e.opts
	opts.Log = slog.New(slog.DiscardHandler)
	r, err := New(opts)
	if err == nil {
		pods, _ := r.ListPods(context.Background())
		for _, p := range pods {
			if err := r.RemovePod(context.Background(), p.UID(), 0); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		r.Close()
	}
	// The parent exists in every hierarchy mounted, whichever they are.
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(e.base)); len(mounts) > 0 {
		t.Errorf("mounts left under %s: %d", e.base, len(mounts))
		return
	}
	os.RemoveAll(e.base)
}

func (e *testEnv) runtime(t testing.TB) *Runtime {
	t.Helper()
	r, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func shellContainer(name, script string) corev1.Container {
	return corev1.Container{
		Name: name, Image: "rootfs:" + testRootfs,
		Command: []string{"/bin/sh", "-c", script},
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
	}
}

func newPod(uid string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + uid, Namespace: "default", UID: types.UID(uid)},
		Spec:       corev1.PodSpec{Containers: containers},
	}
}

func start(t testing.TB, r *Runtime, uid types.UID, name string, attempt int) {
	t.Helper()
	err := r.StartContainer(context.Background(), reconcile.StartRequest{UID: uid, Container: name, Attempt: attempt, PodIPs: []string{"10.250.0.2"}})
	if err != nil {
		t.Fatal(err)
	}
}

// podState lists the pods and returns the one with uid.
func podState(t testing.TB, r *Runtime, uid types.UID) *reconcile.PodState {
	t.Helper()
	pods, err := r.ListPods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.UID() == uid {
			return p
		}
	}
	t.Fatalf("pod %s not listed", uid)
	return nil
}

// latest returns the newest attempt of the named container.
func latest(st *reconcile.PodState, name string) *reconcile.ContainerState {
	var out *reconcile.ContainerState
	for i, c := range st.Containers {
		if c.Name == name && (out == nil || c.Attempt > out.Attempt) {
			out = &st.Containers[i]
		}
	}
	return out
}

// waitFor polls the pod until cond holds for it.
func waitFor(t testing.TB, r *Runtime, uid types.UID, what string, cond func(*reconcile.PodState) bool) *reconcile.PodState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := podState(t, r, uid)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, st.Containers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func exited(name string) func(*reconcile.PodState) bool {
	return func(st *reconcile.PodState) bool {
		c := latest(st, name)
		return c != nil && c.Phase == reconcile.ContainerExited
	}
}

// waitProcessGone waits until process pid has exited (a zombie counts as
// gone).
func waitProcessGone(t testing.TB, pid int, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); processAlive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (process %d) still running after 10 s", what, pid)
		}
	}
}

func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func shimPID(t testing.TB, r *Runtime, uid types.UID) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.podDir(uid), shim.PIDFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
