package netsetup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn on an OS thread that has joined the network namespace ns,
// for the few things netlink cannot reach from outside, such as the
// namespace's /proc/sys/net (the kernel resolves it against the netns of the
// thread that opens the file).
//
// fn runs on a goroutine of its own, locked to its thread, and inNetNS waits
// for it. If the thread cannot return to its original namespace, it is left
// locked when the goroutine exits, and the Go runtime then destroys it
// instead of letting another goroutine run in the pod's namespace.
func inNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- runLocked(ns, fn)
	}()
	return <-errc
}

// runLocked switches the locked thread into ns, runs fn and switches back.
// It unlocks the thread only once it is back in its original namespace.
func runLocked(ns netns.NsHandle, fn func() error) error {
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// sysctl is one setting under /proc/sys.
type sysctl struct {
	path  string // relative to /proc/sys: "net/ipv4/ip_forward"
	value string
}

// ensure writes the setting unless it already has its value, and reports
// whether it wrote. Whitespace inside a value (ping_group_range's tab) is
// compared as one space.
func (s sysctl) ensure() (bool, error) {
	p := filepath.Join("/proc/sys", s.path)
	cur, err := os.ReadFile(p)
	if err != nil {
		return false, err
	}
	if strings.Join(strings.Fields(string(cur)), " ") == s.value {
		return false, nil
	}
	if err := os.WriteFile(p, []byte(s.value), 0o644); err != nil {
		return false, err
	}
	return true, nil
}
