package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// peapodExec runs `peapod exec` against the agent with stdin and returns
// its combined output and exit code.
func (a *rootAgent) peapodExec(stdin string, args ...string) (string, int) {
	a.t.Helper()
	cmd := exec.Command(peapodBin, append([]string{"exec", "--state", a.cfg.State}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		a.t.Fatalf("peapod exec %v: %v", args, err)
	}
	return string(out), 0
}

// TestExecAcrossAgentRestart runs `peapod exec` before and after the
// agent was killed with SIGKILL and started again: the pod's shim, which
// runs the exec, outlives the agent.
func TestExecAcrossAgentRestart(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("ex.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: ex, namespace: tools}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %q
    command: [sleep, "100000"]
    workingDir: /srv
    env: [{name: MODE, value: debug}]
    securityContext: {runAsUser: 1000, runAsGroup: 1000}
  - {name: side, image: %q, command: [sleep, "100000"]}
`, a.Image, a.Image))
	a.waitPod("tools/ex", "running", 30*time.Second, running)

	out, code := a.peapodExec("", "-n", "tools", "ex", "--", "sh", "-c", `id -u; pwd; echo $MODE; exit 3`)
	if code != 3 || !strings.Contains(out, "1000\n/srv\ndebug\n") {
		t.Errorf("peapod exec: exit %d, output %q; want 3, the container's user, working dir and env", code, out)
	}
	if !strings.Contains(out, `Defaulted container "main" out of: main, side`) {
		t.Errorf("peapod exec without -c did not say which container it picked: %q", out)
	}

	a.stop(syscall.SIGKILL)
	a.start()
	out, code = a.peapodExec("streamed\n", "-n", "tools", "ex", "-c", "side", "-i", "--", "cat")
	if code != 0 || out != "streamed\n" {
		t.Errorf("peapod exec -i after an agent restart: exit %d, output %q", code, out)
	}
	if out, code = a.peapodExec("", "-n", "tools", "ex", "-c", "side", "--", "no-such-command"); code != 127 {
		t.Errorf("peapod exec of a missing command: exit %d, output %q; want 127", code, out)
	}
	if out, code = a.peapodExec("", "-n", "tools", "ex", "-c", "nope", "--", "true"); code != 1 || !strings.Contains(out, "choose one of main, side") {
		t.Errorf("peapod exec into an unknown container: exit %d, output %q", code, out)
	}
}

// TestExecTerminal drives `peapod exec -it` from a real terminal: the
// command gets a terminal of the container, of our size, and a resize of
// ours reaches it (SIGWINCH forwarding).
func TestExecTerminal(t *testing.T) {
	a := newRootAgent(t)
	a.start()
	a.writeManifest("tty.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: tty}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: %q, command: [sleep, "100000"]}
`, a.Image))
	a.waitPod("default/tty", "running", 30*time.Second, running)

	master, slave := openTerminal(t)
	setSize(t, slave, 30, 100)
	cmd := exec.Command(peapodBin, "exec", "--state", a.cfg.State, "tty", "-it", "--", "sh", "-c",
		`tty; stty size; while read l; do [ "$l" = q ] && exit 4; stty size; done`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// Our terminal is its controlling terminal: a resize signals it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Read until the terminal's last user is gone (EIO).
	out := &syncBuffer{}
	copied := make(chan struct{})
	go func() { io.Copy(out, master); close(copied) }()
	text := out.String
	a.eventually("the terminal's size printed", 30*time.Second, func() error {
		if !strings.Contains(text(), "30 100") {
			return fmt.Errorf("output %q", text())
		}
		return nil
	})
	setSize(t, master, 40, 120)
	a.eventually("the resize seen in the container", 30*time.Second, func() error {
		if got := text(); !strings.Contains(got, "40 120") {
			master.WriteString("\r")
			return fmt.Errorf("output ends %q", got[max(0, len(got)-80):])
		}
		return nil
	})
	master.WriteString("q\r")
	err := <-done
	<-copied
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 {
		t.Errorf("peapod exec -it: %v, want exit 4\n%s", err, text())
	}
	if !strings.Contains(text(), "/dev/pts/") {
		t.Errorf("the command's tty is not a terminal of the container: %q", text())
	}
}

// openTerminal opens a pseudo-terminal pair of the host's devpts.
func openTerminal(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func setSize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatal(err)
	}
}
