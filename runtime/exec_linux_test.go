package runtime

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peapod/peapod/runtime/shim"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitText(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.String(), want); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q after 30 s", want, b.String())
		}
	}
}

// requireStatic skips unless the test binary is statically linked: it is
// also the exec stage, executed inside the container's root, which has no
// dynamic loader (peapod is always built with CGO_ENABLED=0).
func requireStatic(t *testing.T) {
	t.Helper()
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skip("the test binary is dynamically linked: run with CGO_ENABLED=0, as hack/test.sh does")
		}
	}
}

// TestRootExec runs processes in a container through its shim: output,
// exit codes, stdin, a terminal with resizes, a client that goes away,
// and a container that stops under an exec'd process.
func TestRootExec(t *testing.T) {
	requireStatic(t)
	env := newTestEnv(t)
	r := env.runtime(t)
	ctx := context.Background()
	pod := newPod("exec", shellContainer("app", `exec sleep 1000`))
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	start(t, r, pod.UID, "app", 0)
	exec := func(stdin string, args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		opts := ExecOptions{Args: args, Stdout: &out, Stderr: &errOut}
		if stdin != "" {
			opts.Stdin = strings.NewReader(stdin)
		}
		code, err := r.Exec(ctx, pod.UID, "app", opts)
		if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}

	if code, out, errOut := exec("", "sh", "-c", `echo "out $POD_NAME"; echo err >&2; exit 3`); code != 3 || out != "out web-exec\n" || errOut != "err\n" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q; want 3, the container's env, err", code, out, errOut)
	}
	if code, _, errOut := exec("", "no-such-command"); code != 127 || !strings.Contains(errOut, "not found") {
		t.Errorf("exec of a missing command: exit %d, stderr %q; want 127", code, errOut)
	}
	in := strings.Repeat("through the shim\n", 5000)
	if code, out, _ := exec(in, "cat"); code != 0 || out != in {
		t.Errorf("cat: exit %d, %d bytes back of %d", code, len(out), len(in))
	}

	t.Run("tty", func(t *testing.T) {
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		resize := make(chan shim.WindowSize)
		var out syncBuffer
		done := make(chan error, 1)
		var code int
		go func() {
			var err error
			code, err = r.Exec(ctx, pod.UID, "app", ExecOptions{
				Args: []string{"sh", "-c", `tty; stty size; while read l; do [ "$l" = q ] && exit 5; stty size; done`},
				TTY:  true, Size: shim.WindowSize{Width: 80, Height: 24}, Resize: resize,
				Stdin: stdinR, Stdout: &out,
			})
			done <- err
		}()
		waitText(t, &out, "24 80")
		resize <- shim.WindowSize{Width: 132, Height: 50}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "50 132"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("resize never reached the terminal: %q", out.String())
			}
			io.WriteString(stdinW, "\n")
		}
		io.WriteString(stdinW, "q\n")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := out.String(); code != 5 || !strings.HasPrefix(got, "/dev/pts/") {
			t.Errorf("terminal session: exit %d, output %q; want 5 and a /dev/pts name", code, got)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		var out syncBuffer
		done := make(chan error, 1)
		go func() {
			_, err := r.Exec(cctx, pod.UID, "app", ExecOptions{Args: []string{"sh", "-c", "echo up; exec sleep 999"}, Stdout: &out})
			done <- err
		}()
		waitText(t, &out, "up")
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("cancelled exec returned %v", err)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, ps, _ := exec("", "ps"); !strings.Contains(ps, "sleep 999") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the exec'd sleep outlived its client by 30 s")
			}
		}
	})

	t.Run("container stops", func(t *testing.T) {
		var out syncBuffer
		done := make(chan int, 1)
		go func() {
			code, err := r.Exec(ctx, pod.UID, "app", ExecOptions{Args: []string{"sh", "-c", "echo up; exec sleep 998"}, Stdout: &out})
			if err != nil {
				t.Error(err)
			}
			done <- code
		}()
		waitText(t, &out, "up")
		if err := r.StopContainer(ctx, pod.UID, "app", 0); err != nil {
			t.Fatal(err)
		}
		if code := <-done; code != 137 {
			t.Errorf("exec'd process ended with %d when its container stopped, want 137 (SIGKILL)", code)
		}
		if _, err := r.Exec(ctx, pod.UID, "app", ExecOptions{Args: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "not running") {
			t.Errorf("exec into a stopped container: %v, want not running", err)
		}
	})
}

// BenchmarkRootExec measures Runtime.Exec of `true` in a running
// container (cgroups on), beside a bare `nsenter ... true` into the same
// container: the floor that joining the namespaces and executing a
// command in them costs with util-linux.
func BenchmarkRootExec(b *testing.B) {
	if testing.Short() {
		b.Skip("needs root and a container")
	}
	env := newTestEnv(b)
	r := env.runtime(b)
	ctx := context.Background()
	pod := newPod("execbench", shellContainer("app", `exec sleep 100000`))
	if _, err := r.CreateSandbox(ctx, pod); err != nil {
		b.Fatal(err)
	}
	start(b, r, pod.UID, "app", 0)
	pid := latest(podState(b, r, pod.UID), "app").PID
	var execT, floorT []time.Duration
	for b.Loop() {
		t0 := time.Now()
		code, err := r.Exec(ctx, pod.UID, "app", ExecOptions{Args: []string{"true"}})
		if err != nil || code != 0 {
			b.Fatalf("exec true: %d, %v", code, err)
		}
		t1 := time.Now()
		floor := osexec.Command("nsenter", "--target", strconv.Itoa(pid), "--mount", "--uts", "--ipc", "--net",
			"--pid", "--cgroup", "--user", "--root", "--wd", "true")
		if out, err := floor.CombinedOutput(); err != nil {
			b.Fatalf("nsenter true: %v: %s", err, out)
		}
		execT, floorT = append(execT, t1.Sub(t0)), append(floorT, time.Since(t1))
	}
	b.ReportMetric(ms(median(execT)), "exec-ms")
	b.ReportMetric(ms(median(floorT)), "nsenter-true-ms")
}
