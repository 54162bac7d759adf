package container

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// execTest is a running container to exec into.
type execTest struct {
	spec   *Spec
	p      *Process
	target ExecTarget
}

func startExecTest(t *testing.T, spec *Spec) *execTest {
	t.Helper()
	requireStatic(t)
	p := startTest(t, spec)
	// Opened while the init is our unreaped child, as the shim does.
	pidfd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pidfd) })
	return &execTest{spec: spec, p: p, target: ExecTarget{PID: p.Pid, PIDFD: pidfd}}
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

// exec runs args in the container with stdin and returns its exit code,
// stdout and stderr.
func (e *execTest) exec(t *testing.T, stdin string, opts ExecOptions, args ...string) (int, string, string) {
	t.Helper()
	opts.Args = args
	inR, inW := pipe(t)
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	opts.Stdin, opts.Stdout, opts.Stderr = inR, outW, errW
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Exec(ctx, e.spec, e.target, &opts)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		msg, _ := io.ReadAll(errR)
		t.Fatalf("%v: %s", err, msg)
	}
	go func() {
		io.WriteString(inW, stdin)
		inW.Close()
	}()
	var stdout, stderr bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&stderr, errR); close(done) }()
	io.Copy(&stdout, outR)
	<-done
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return exitCode(st), stdout.String(), stderr.String()
}

func exitCode(st *os.ProcessState) int {
	ws := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestExecIdentity checks that an exec'd process is the container's twin:
// same namespaces, user, groups, capabilities, no_new_privs, seccomp
// mode, environment and working directory.
func TestExecIdentity(t *testing.T) {
	pod := newTestPod(t, "exec-pod")
	spec := pod.spec(t, "sleep", "1000")
	spec.UID, spec.GID, spec.AdditionalGIDs = 1000, 1001, []uint32{2000}
	spec.NoNewPrivileges = true
	spec.Cwd = "/home/app"
	spec.Env = append(spec.Env, "GREETING=hello")
	e := startExecTest(t, spec)
	waitExec(t, e.p.Pid, "sleep")

	code, out, errOut := e.exec(t, "", ExecOptions{}, "sh", "-c",
		`id; pwd; echo "GREETING=$GREETING"; grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; `+
			`grep -E '^(Uid|Gid|Groups):' /proc/1/status | sed 's/^/init /'; `+
			`for n in mnt uts ipc net pid cgroup user; do echo "ns $n $(stat -L -c %i /proc/self/ns/$n)"; done`)
	if code != 0 {
		t.Fatalf("exec exited %d: %s%s", code, out, errOut)
	}
	for _, want := range []string{
		"uid=1000 gid=1001 groups=2000", "/home/app\n", "GREETING=hello\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exec output lacks %q:\n%s", want, out)
		}
	}
	// The container's identity, as its init (PID 1) shows it inside.
	for _, field := range []string{"Uid", "Gid", "Groups"} {
		want := regexp.MustCompile("(?m)^init (" + field + ":.*)$").FindStringSubmatch(out)
		if want == nil || !strings.Contains(out, "\n"+want[1]+"\n") {
			t.Errorf("exec'd process: want the container's %s, %q:\n%s", field, want, out)
		}
	}
	// Its privileges, as the host reads them from its init.
	status := readProc(t, e.p.Pid, "status")
	for _, field := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"} {
		want := regexp.MustCompile("(?m)^" + field + ":.*$").FindString(status)
		if want == "" {
			t.Fatalf("init status has no %s", field)
		}
		if !strings.Contains(out, want+"\n") {
			t.Errorf("exec'd process: want the container's %q:\n%s", want, out)
		}
	}
	for _, ns := range []string{"mnt", "uts", "ipc", "net", "pid", "cgroup", "user"} {
		if want := fmt.Sprintf("ns %s %s\n", ns, nsOf(t, e.p.Pid, ns)); !strings.Contains(out, want) {
			t.Errorf("exec'd process not in the container's %s namespace: want %q:\n%s", ns, want, out)
		}
	}
}

// TestExecExitCodes checks the command's status and the shell's 126 and
// 127 for a command that cannot run.
func TestExecExitCodes(t *testing.T) {
	pod := newTestPod(t, "exec-codes")
	e := startExecTest(t, pod.spec(t, "sleep", "1000"))
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"true"}, 0, ""},
		{[]string{"sh", "-c", "exit 3"}, 3, ""},
		{[]string{"no-such-command"}, ExitNotFound, "executable file not found"},
		{[]string{"/no/such/file"}, ExitNotFound, "no such file"},
		{[]string{"/etc/hostname"}, ExitNotExecutable, "permission denied"},
	} {
		code, _, errOut := e.exec(t, "", ExecOptions{}, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("exec %q: exit %d, stderr %q; want %d, %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
}

// TestExecStdin streams stdin through cat.
func TestExecStdin(t *testing.T) {
	pod := newTestPod(t, "exec-stdin")
	e := startExecTest(t, pod.spec(t, "sleep", "1000"))
	in := strings.Repeat("line of input\n", 10000)
	code, out, _ := e.exec(t, in, ExecOptions{}, "cat")
	if code != 0 || out != in {
		t.Errorf("cat: exit %d, %d bytes back of %d", code, len(out), len(in))
	}
}

// TestExecNoHostDescriptors checks that the process holds its three
// streams and nothing else of ours, that its working directory and root
// are the container's, and that /proc/self/exe is the image's binary.
func TestExecNoHostDescriptors(t *testing.T) {
	pod := newTestPod(t, "exec-fds")
	e := startExecTest(t, pod.spec(t, "sleep", "1000"))
	code, out, errOut := e.exec(t, "", ExecOptions{}, "sh", "-c",
		`readlink /proc/$$/exe; readlink /proc/$$/cwd; readlink /proc/$$/root`)
	if code != 0 || out != "/bin/busybox\n/\n/\n" {
		t.Errorf("exe, cwd and root of the exec'd process: exit %d, %q, want the container's /bin/busybox, / and /:\n%s", code, out, errOut)
	}

	// Seen from the host, while it runs.
	stdout, w := pipe(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Exec(ctx, e.spec, e.target, &ExecOptions{Args: []string{"sleep", "1000"}, Stdout: w, Stderr: w})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Signal(unix.SIGKILL); p.Wait() }()
	pid := waitSleeping(t, p.Pid)
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		fds = append(fds, e.Name())
	}
	if want := []string{"0", "1", "2"}; !slices.Equal(fds, want) {
		t.Errorf("exec'd process has descriptors %q, want %q", fds, want)
	}
	if got, want := inodeOf(t, fmt.Sprintf("/proc/%d/fd/1", pid)), inodeOf(t, fmt.Sprintf("/proc/self/fd/%d", stdout.Fd())); got != want {
		t.Errorf("exec'd process's stdout is inode %d, not the pipe given (%d)", got, want)
	}
}

// TestExecStageShielded holds an exec stage before it receives its
// config, checks that it runs the sealed copy of our binary, and that root
// of the container cannot look into it:
// /proc/PID/{environ,exe,fd} of a non-dumpable process are refused
// (runc CVE-2016-9962).
func TestExecStageShielded(t *testing.T) {
	pod := newTestPod(t, "exec-shield")
	e := startExecTest(t, pod.spec(t, "sleep", "1000"))
	cmd, conn, err := launchExec(e.spec, e.target, &ExecOptions{Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cmd.Process.Kill(); cmd.Wait() })
	stage := waitChild(t, cmd.Process.Pid)
	// What it runs is the sealed copy, never a host file (CVE-2019-5736).
	exe := fmt.Sprintf("/proc/%d/exe", stage)
	if got, err := os.Readlink(exe); err != nil || got != "/memfd:peapod-init (deleted)" {
		t.Errorf("exec stage executable %q, %v; want the sealed memfd", got, err)
	}
	if w, err := os.OpenFile(exe, os.O_WRONLY, 0); err == nil {
		_, err = w.Write([]byte("x"))
		w.Close()
		if err == nil {
			t.Error("wrote to the exec stage's executable")
		}
	}
	// Its PID inside the container: the last of NSpid.
	nspid := strings.Fields(regexp.MustCompile(`(?m)^NSpid:.*$`).FindString(readProc(t, stage, "status")))
	inside := nspid[len(nspid)-1]
	code, out, errOut := e.exec(t, "", ExecOptions{}, "sh", "-c",
		fmt.Sprintf(`cat /proc/%[1]s/cmdline >/dev/null && echo seen; cat /proc/%[1]s/environ && echo environ; readlink /proc/%[1]s/exe && echo exe; ls /proc/%[1]s/fd && echo fd; true`, inside))
	if code != 0 || !strings.Contains(out, "seen") {
		t.Fatalf("exec exited %d, did not see the stage %s: %s%s", code, inside, out, errOut)
	}
	for _, leak := range []string{"environ", "exe", "fd"} {
		if strings.Contains(out, leak+"\n") {
			t.Errorf("container root read /proc/%s/%s of the exec stage:\n%s%s", inside, leak, out, errOut)
		}
	}
}

// waitChild returns the one child of process pid once it exists.
func waitChild(t *testing.T, pid int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if f := strings.Fields(readProc(t, pid, fmt.Sprintf("task/%d/children", pid))); len(f) == 1 {
			child, err := strconv.Atoi(f[0])
			if err != nil {
				t.Fatal(err)
			}
			// The child executes the stage once nsenter has set it up.
			if argv := strings.Split(readProc(t, child, "cmdline"), "\x00"); len(argv) > 1 && argv[1] == ExecArg {
				return child
			}
		}
	}
	t.Fatalf("process %d started no exec stage", pid)
	return 0
}

// TestExecTTY drives a terminal from the container's devpts: the process
// sees it as its terminal, with the size given, and a resize reaches it.
func TestExecTTY(t *testing.T) {
	pod := newTestPod(t, "exec-tty")
	e := startExecTest(t, pod.spec(t, "sleep", "1000"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Exec(ctx, e.spec, e.target, &ExecOptions{
		Args: []string{"sh", "-c", `tty; stty size; read line; stty size; echo "got $line"`},
		TTY:  true, Width: 80, Height: 24,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Console.Close()
	out := &lockedBuffer{}
	copied := make(chan struct{})
	go func() { io.Copy(out, p.Console); close(copied) }()
	waitOutput(t, out, "24 80")
	if err := unix.IoctlSetWinsize(int(p.Console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 132}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Console.WriteString("resized\n"); err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	<-copied // EIO once the terminal's last user is gone
	got := out.String()
	if !regexp.MustCompile(`^/dev/pts/\d+\r\n24 80\r\n`).MatchString(got) || !strings.Contains(got, "50 132\r\ngot resized") {
		t.Errorf("terminal session printed %q, want the terminal's name, 24 80, then 50 132 and the line read", got)
	}
	if !st.Success() {
		t.Errorf("terminal session: %v", st)
	}
}

type lockedBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *lockedBuffer) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

func waitOutput(t *testing.T, b *lockedBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.String(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output %q after 30 s", want, b.String())
		}
	}
}

// TestExecDiesWithContainer checks that an exec'd process is killed when
// the container's init dies, and that it was in the container's cgroups.
func TestExecDiesWithContainer(t *testing.T) {
	pod := newTestPod(t, "exec-dies")
	spec := pod.spec(t, "sleep", "1000")
	cg := newTestCgroup(t, "app")
	spec.Cgroup = cg
	e := startExecTest(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Exec(ctx, spec, e.target, &ExecOptions{Args: []string{"sleep", "1000"}, Cgroup: cg})
	if err != nil {
		t.Fatal(err)
	}
	assertHostCgroups(t, p.Pid, cg)
	assertHostCgroups(t, waitSleeping(t, p.Pid), cg)
	// Our own thread went back where it was.
	if got := readProc(t, os.Getpid(), "cgroup"); strings.Contains(got, cg.Path()) {
		t.Errorf("a test thread stayed in the container's cgroups:\n%s", got)
	}
	e.p.Signal(unix.SIGKILL)
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if code := exitCode(st); code != 128+int(unix.SIGKILL) {
		t.Errorf("exec'd sleep ended with %d when its container died, want 137", code)
	}
}

// waitSleeping returns the PID of nsenter's child once it runs sleep.
func waitSleeping(t *testing.T, nsenter int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		f := strings.Fields(readProc(t, nsenter, fmt.Sprintf("task/%d/children", nsenter)))
		if len(f) != 1 {
			continue
		}
		child, _ := strconv.Atoi(f[0])
		if argv := strings.Split(readProc(t, child, "cmdline"), "\x00"); slices.Contains(argv[:min(2, len(argv))], "sleep") {
			return child
		}
	}
	t.Fatal("exec'd sleep did not start")
	return 0
}

// TestExecGoneContainer refuses an exec into an init that has exited,
// even though its PID may name another process by then.
func TestExecGoneContainer(t *testing.T) {
	pod := newTestPod(t, "exec-gone")
	spec := pod.spec(t, "true")
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	p.Wait()
	_, err = Exec(context.Background(), spec, ExecTarget{PID: os.Getpid(), PIDFD: pidfd}, &ExecOptions{Args: []string{"true"}})
	if err == nil {
		t.Fatal("exec into an exited container (its PID pointed at the test) succeeded")
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p.Pid))); err == nil {
		t.Logf("PID %d reused", p.Pid)
	}
}

// TestExecHostUsers execs into a container without a user namespace of
// its own (hostUsers: true): there is no user namespace to join.
func TestExecHostUsers(t *testing.T) {
	pod := newTestPod(t, "exec-hostusers")
	spec := pod.spec(t, "sleep", "1000")
	spec.UserNS = nil
	e := startExecTest(t, spec)
	code, out, errOut := e.exec(t, "", ExecOptions{}, "sh", "-c", `id -u; stat -L -c %i /proc/self/ns/mnt`)
	if want := "0\n" + nsOf(t, e.p.Pid, "mnt") + "\n"; code != 0 || out != want {
		t.Errorf("exec into a hostUsers container: exit %d, %q, want %q: %s", code, out, want, errOut)
	}
}
