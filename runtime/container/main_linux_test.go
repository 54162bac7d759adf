package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/peapod/peapod/runtime/sandbox"
	"github.com/peapod/peapod/runtime/userns"
	"k8s.io/apimachinery/pkg/types"
)

// testRootfs is a busybox image shared by the tests of this binary.
var testRootfs string

func TestMain(m *testing.M) {
	// The test binary is also the init stage: Start re-executes it.
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		RunInit()
	}
	if len(os.Args) > 1 && os.Args[1] == ExecArg {
		RunExec()
	}
	if spec := os.Getenv(parentEnv); spec != "" {
		os.Exit(runParent(spec))
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
		out, err := exec.Command("../../hack/mkrootfs.sh", testRootfs).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build test rootfs: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

// parentEnv makes the test binary a container's parent that starts the
// container of the JSON spec it holds, prints its PID and waits to be killed.
const parentEnv = "PEAPOD_TEST_PARENT_SPEC"

func runParent(data string) int {
	var spec Spec
	if err := json.Unmarshal([]byte(data), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := Start(context.Background(), &spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(p.Pid)
	p.Wait()
	return 0
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): creates namespaces, mounts and containers")
	}
}

// testPod is a sandbox with a user-ID range, removed when the test ends.
type testPod struct {
	sb     *sandbox.Sandbox
	hostID uint32
}

func newTestPod(t testing.TB, hostname string) *testPod {
	t.Helper()
	requireRoot(t)
	state := t.TempDir()
	dir := filepath.Join(state, "pod")
	t.Cleanup(func() {
		if err := sandbox.Remove(dir); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	sb, err := sandbox.Create(context.Background(), sandbox.Config{Dir: dir, Hostname: hostname, ResolvConf: []byte("nameserver 10.96.0.10\n")})
	if err != nil {
		t.Fatal(err)
	}
	alloc, err := userns.New(state, userns.DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	hostID, err := alloc.Allocate(types.UID(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	return &testPod{sb: sb, hostID: hostID}
}

// spec returns a container spec in the pod running args, with its output
// in a file that output reads; Cleanup runs when the test ends.
func (p *testPod) spec(t testing.TB, args ...string) *Spec {
	t.Helper()
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "output"))
	if err != nil {
		t.Fatal(err)
	}
	spec := &Spec{
		ID:     t.Name(),
		Args:   args,
		Env:    []string{"PATH=/bin", "HOME=/root"},
		Lower:  []string{testRootfs},
		Dir:    filepath.Join(dir, "ctr"),
		UserNS: &IDMap{HostID: p.hostID, Size: userns.RangeSize},
		NetNS:  p.sb.NetNS, IPCNS: p.sb.IPCNS, UTSNS: p.sb.UTSNS,
		Mounts: SandboxMounts(p.sb),
		Stdout: out,
		Stderr: out,
	}
	t.Cleanup(func() {
		out.Close()
		if err := Cleanup(spec); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return spec
}

// startTest starts spec and makes sure the container is gone when the test ends.
func startTest(t testing.TB, spec *Spec) *Process {
	t.Helper()
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		p.Signal(os.Kill)
		<-done
	})
	go func() {
		defer close(done)
		p.Wait()
	}()
	return p
}

// run runs spec to completion and returns its output.
func run(t testing.TB, spec *Spec) string {
	t.Helper()
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { p.Signal(os.Kill) })
	defer stop()
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(spec.Stdout.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Success() {
		t.Fatalf("container %v: %v\n%s", spec.Args, st, out)
	}
	return string(out)
}
