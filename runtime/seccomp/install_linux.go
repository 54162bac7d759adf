package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads the program as a filter of the calling thread, which keeps
// it across execve, with the flags the profile asked for. The kernel
// requires no_new_privs or CAP_SYS_ADMIN in the thread's user namespace.
// It changes no other thread of the process (no TSYNC): the caller must be
// the thread that execs, locked to its goroutine.
func (p *Program) Install() error {
	raw, err := decode(p.Filter)
	if err != nil {
		return err
	}
	if len(raw) == 0 {
		return fmt.Errorf("install seccomp filter: empty program")
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(p.Flags), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}
