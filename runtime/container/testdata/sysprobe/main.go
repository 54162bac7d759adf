// sysprobe makes the system calls a seccomp profile decides on and prints
// name=OK or name=ERRNO for each, for the container tests. Built static
// (CGO_ENABLED=0) by the test and bound into the container.
package main

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	var params [120]byte // struct io_uring_params
	probe("io_uring_setup", func() (uintptr, uintptr, unix.Errno) {
		return unix.Syscall(unix.SYS_IO_URING_SETUP, 2, uintptr(unsafe.Pointer(&params)), 0)
	})
	keyType, desc, payload := []byte("user\x00"), []byte("peapod\x00"), []byte("x")
	probe("add_key", func() (uintptr, uintptr, unix.Errno) {
		return unix.Syscall6(unix.SYS_ADD_KEY, uintptr(unsafe.Pointer(&keyType[0])), uintptr(unsafe.Pointer(&desc[0])),
			uintptr(unsafe.Pointer(&payload[0])), uintptr(len(payload)), uintptr(0xfffffffe) /* KEY_SPEC_PROCESS_KEYRING */, 0)
	})
	probe("keyctl", func() (uintptr, uintptr, unix.Errno) {
		return unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	})
	dir := []byte("/tmp/sysprobe-dir\x00")
	probe("mkdirat", func() (uintptr, uintptr, unix.Errno) {
		return unix.Syscall(unix.SYS_MKDIRAT, uintptr(0xffffff9c) /* AT_FDCWD */, uintptr(unsafe.Pointer(&dir[0])), 0o755)
	})
}

func probe(name string, call func() (uintptr, uintptr, unix.Errno)) {
	if _, _, errno := call(); errno != 0 {
		fmt.Printf("%s=%s\n", name, unix.ErrnoName(errno))
		return
	}
	fmt.Printf("%s=OK\n", name)
}
