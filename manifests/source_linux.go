package manifests

import (
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileID identifies one version of a file: a rename, a rewrite or a chmod
// changes at least one field, so an equal fileID means the content and the
// permissions checked last time still hold.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

// idOf returns the identity of the file fi describes. fi must come from
// os.Stat or os.Lstat.
func idOf(fi fs.FileInfo) fileID {
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// ownerOf returns the uid owning the file fi describes. fi must come from
// os.Stat or os.Lstat.
func ownerOf(fi fs.FileInfo) uint32 {
	return fi.Sys().(*syscall.Stat_t).Uid
}

// openForWriting reports whether some process may hold path open for
// writing. It asks for a read lease, which the kernel refuses with EAGAIN
// while the file is open for writing anywhere, and drops the lease at once.
// Whatever it cannot tell (a special file, a filesystem without leases) it
// reports as true: the caller then waits, which is always safe.
//
// While the lease is held, for microseconds, a process opening the file
// for writing waits for it to be dropped; the kernel tells this process
// with SIGIO, which Go ignores unless asked for.
func openForWriting(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		// Gone already: the rescan will see that, at once.
		return !errors.Is(err, unix.ENOENT)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return true
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return true
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return err != nil
}
