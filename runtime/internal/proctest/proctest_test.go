package proctest

import (
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
)

func TestStatusMask(t *testing.T) {
	const status = "Name:\tsh\nSigPnd:\t0000000000000000\nSigIgn:\t0000000000004004\nSigCgt:\t0000000000010002\n"
	for _, tc := range []struct {
		d    Disposition
		want uint64
	}{{Ignored, 0x4004}, {Caught, 0x10002}} {
		got, err := statusMask(status, tc.d)
		if err != nil || got != tc.want {
			t.Errorf("statusMask(%s) = %#x, %v; want %#x", tc.d, got, err, tc.want)
		}
	}
	if _, err := statusMask("Name:\tsh\n", Caught); err == nil {
		t.Error("statusMask of a status without SigCgt: no error")
	}
}

// TestWaitSignal checks the masks of this test process, which ignores
// SIGUSR2 only once told to.
func TestWaitSignal(t *testing.T) {
	if ok, err := hasSignal(os.Getpid(), syscall.SIGUSR2, Ignored); err != nil || ok {
		t.Fatalf("SIGUSR2 ignored before signal.Ignore: %v, %v", ok, err)
	}
	signal.Ignore(syscall.SIGUSR2)
	t.Cleanup(func() { signal.Reset(syscall.SIGUSR2) })
	WaitSignal(t, os.Getpid(), syscall.SIGUSR2, Ignored)
	// Go installs a handler for SIGINT (signal.Notify or not).
	if ok, err := hasSignal(os.Getpid(), syscall.SIGINT, Caught); err != nil || !ok {
		t.Errorf("SIGINT caught: %v, %v; want true", ok, err)
	}
}

func TestWaitSleeping(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	WaitSleeping(t, cmd.Process.Pid)
}

func TestStatState(t *testing.T) {
	for stat, want := range map[string]string{
		"42 (sleep) S 1 42":       "S",
		"42 (a) b) (c) R 1 42 42": "R",
		"42 (x":                   "",
		"42 (x)":                  "",
	} {
		got, ok := statState(stat)
		if got != want || ok != (want != "") {
			t.Errorf("statState(%q) = %q, %v; want %q", stat, got, ok, want)
		}
	}
}
