package cgroups

import (
	"errors"
	"fmt"

	occgroups "github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// freezer is the part of the library's v1 and v2 managers that kill needs.
type freezer interface {
	Freeze(state occgroups.FreezerState) error
}

// killFrozen SIGKILLs every process in the cgroup at dir and below. It
// freezes the cgroup first so that nothing forks between reading the PID
// list and signalling, then thaws it: frozen tasks die only once thawed.
func killFrozen(f freezer, dir string) error {
	if err := f.Freeze(occgroups.Frozen); err != nil {
		return fmt.Errorf("freeze %s: %w", dir, err)
	}
	return errors.Join(signalAll(dir), f.Freeze(occgroups.Thawed))
}

// signalAll SIGKILLs every process in the cgroup at dir and below. A
// process that is already gone is not an error.
func signalAll(dir string) error {
	pids, err := occgroups.GetAllPids(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}
