package container

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// exeSeals make the init stage's executable immutable: no write, no resize,
// and no way to lift the seals.
const exeSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// exeMode is the mode of the sealed copy: executable by all, readable by
// none. Root of the host reads it anyway (CAP_DAC_OVERRIDE), which is all
// SealedExe needs. A container's root cannot: it is not host root, and the
// file's owner is not mapped into its user namespace. When execve cannot
// read the file it runs, the kernel marks the new process non-dumpable
// and ties its memory to the nearest user namespace that owns the file,
// the host's (fs/exec.c would_dump). So the init and exec stages, executed
// by container root, are shielded from ptrace and from /proc/PID/{mem,fd,
// cwd,environ} from their first instruction, not only once Go has started
// and called PR_SET_DUMPABLE (runc CVE-2016-9962).
const exeMode = 0o111

// minExeFD keeps the copy above the descriptors os/exec dup2s into place in
// the child (stdio and ExtraFiles, 0 to 3), which would otherwise clobber it
// before the child execs /proc/self/fd/N.
const minExeFD = 10

var sealed struct {
	mu sync.Mutex
	f  *os.File
}

// SealedExe returns a sealed memfd copy of the running binary, made on first
// use and shared by every container this process starts. The caller must
// not close the file.
//
// The init stage runs our binary inside the container's namespaces, so a
// process of the container could open /proc/<init pid>/exe and, were it the
// host's file, write through it and take over the host binary
// (CVE-2019-5736). Executing a sealed in-memory copy leaves it nothing
// writable to reach.
//
// A process that was itself executed from such a copy (the agent launches
// shims from its own, see runtime.New) reuses it instead of copying the
// binary again: the seals travel with the inode, and they cannot be lifted.
func SealedExe() (*os.File, error) {
	sealed.mu.Lock()
	defer sealed.mu.Unlock()
	if sealed.f != nil {
		return sealed.f, nil
	}
	f, err := reopenIfSealed("/proc/self/exe")
	if err == nil && f == nil {
		f, err = copyToSealedMemfd("/proc/self/exe")
	}
	if err != nil {
		return nil, fmt.Errorf("make sealed copy of peapod binary: %w", err)
	}
	sealed.f = f
	return f, nil
}

// reopenIfSealed opens path above minExeFD if it is a memfd carrying every
// one of exeSeals; it returns nil, nil for any other file.
func reopenIfSealed(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || seals&exeSeals != exeSeals {
		return nil, nil // not a memfd (EINVAL), or not sealed for good
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minExeFD)
	if err != nil {
		return nil, fmt.Errorf("move sealed exe above %d: %w", minExeFD, err)
	}
	return os.NewFile(uintptr(high), "memfd:peapod-init"), nil
}

func copyToSealedMemfd(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("peapod-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minExeFD)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("move memfd above %d: %w", minExeFD, err)
	}
	f := os.NewFile(uintptr(high), "memfd:peapod-init")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s: %w", path, err)
	}
	// Executable, not readable, by anyone but root of the host: a stage
	// executed from it inside a container's user namespace then starts
	// non-dumpable, and no process of the container may ptrace it or open
	// its /proc files before it has exec'd (see exeMode).
	if err := unix.Fchmod(int(f.Fd()), exeMode); err != nil {
		f.Close()
		return nil, fmt.Errorf("restrict memfd: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, exeSeals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return f, nil
}
