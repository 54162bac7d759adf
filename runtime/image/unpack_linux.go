package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The whiteout names of the OCI layer format, and the overlay xattr an
// opaque directory becomes.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	overlayOpaque  = "trusted.overlay.opaque"
)

// unpacker writes one layer's tar stream into an empty directory, in the
// format overlayfs reads as a lower layer. It is the one place where
// bytes from a registry become files on the host, so it trusts nothing in
// the stream:
//
//   - Every path is resolved beneath the layer directory by openat2 with
//     RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, one directory at a time, and
//     every file is made by an *at call relative to that directory with a
//     single-component name. A "..", an absolute name, or a symlink that
//     an earlier entry planted (symlink-then-write) can therefore never
//     lead a write outside the layer: the kernel refuses the walk
//     (EXDEV/ELOOP) rather than peapod checking strings. Where containerd
//     would follow a symlink of the same layer if it stays inside, peapod
//     refuses the layer: build tools never write such entries (a layer
//     diff lists real paths), and a refusal is the simpler proof.
//   - Hard link targets are resolved the same way, and linkat is called
//     without AT_SYMLINK_FOLLOW, so a link to a symlink links the symlink
//     itself, never what it points at.
//   - Device nodes are skipped, as containerd's and moby's unpackers do
//     when they run in a user namespace (rootless), where mknod is
//     refused: the layer is shown to containers whose root is an
//     unprivileged host user, which could not make them either, and a
//     device node here would be a host device the image chose.
//     Overlay whiteouts (0/0 character devices) are made by peapod from
//     .wh. entries, never taken from the tar.
//   - Only user.* and security.capability xattrs are kept. trusted.* and
//     security.* others are host-level attributes: trusted.overlay.* in
//     particular would let a layer forge overlay metadata (opaque,
//     redirect, metacopy). security.capability is kept as written (a v2
//     capability set from the image); through the idmapped mount the
//     kernel grants it only within the container's user namespace.
//   - Setuid/setgid bits and owners are kept as in the image, as
//     containerd does: the files are owned by host IDs 0-65535 and shown to
//     the container through an idmapped mount that maps them into the
//     pod's range. Host users never reach them: the store is mode 0700.
//
// A layer whose tar is malformed or hostile fails as a whole; the caller
// removes the half-written directory, which lives under tmp/ until it is
// complete.
type unpacker struct {
	root    int // the layer directory
	size    int64
	devices int
	xattrs  int
	dirs    []dirTime
	buf     []byte
}

type dirTime struct {
	name  string
	mtime time.Time
}

// beneath confines a path walk to its starting directory and refuses
// every symlink on the way, magic /proc links included.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// unpackLayer unpacks the tar stream r into dir, an empty directory, and
// returns the bytes the layer's files take (regular files, rounded up to
// 4 KiB blocks), how many device nodes were skipped and how many xattrs
// were dropped.
func unpackLayer(r io.Reader, dir string) (u *unpacker, err error) {
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open layer directory %s: %w", dir, err)
	}
	defer unix.Close(root)
	u = &unpacker{root: root, buf: make([]byte, 1<<20)}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	// Directories get their times last: writing their entries changed
	// them. A directory a later entry replaced (by a symlink, say) is no
	// longer reachable and keeps no time.
	for _, d := range u.dirs {
		err := u.setTimes(d.name, d.mtime)
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("layer entry %q: %w", d.name, err)
		}
	}
	return u, nil
}

// cleanName turns a tar name into a path relative to the layer root. A
// leading "/" is dropped, as tar does on extraction; any ".." is refused
// outright: no layer made by a build tool has one.
func cleanName(n string) (string, error) {
	n = strings.TrimLeft(n, "/")
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", errors.New("the name leaves the layer directory (\"..\")")
		}
	}
	if n = path.Clean(n); n == "." {
		return "", nil
	}
	return n, nil
}

func splitName(n string) (dir, base string) {
	dir, base = path.Split(n)
	return strings.TrimSuffix(dir, "/"), base
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("the layer root must be a directory")
		}
		return u.setMeta(u.root, hdr)
	}
	dir, base := splitName(name)
	switch {
	case base == whiteoutOpaque:
		return u.opaque(dir)
	case strings.HasPrefix(base, whiteoutPrefix):
		return u.whiteout(dir, strings.TrimPrefix(base, whiteoutPrefix))
	}
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		u.devices++
		return nil
	}
	parent, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.mkdir(parent, base, name, hdr)
	case tar.TypeReg:
		return u.file(parent, base, hdr, r)
	case tar.TypeSymlink:
		return u.symlink(parent, base, hdr)
	case tar.TypeLink:
		return u.link(parent, base, hdr)
	case tar.TypeFifo:
		return u.fifo(parent, base, hdr)
	}
	// PAX global headers and the like describe no file.
	return nil
}

// openBeneath opens the directory p below dirfd, refusing to leave dirfd
// or to cross a symlink.
func openBeneath(dirfd int, p string) (int, error) {
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: beneath}
	for {
		fd, err := unix.Openat2(dirfd, p, how)
		// EAGAIN: a rename elsewhere on the system raced the walk, and
		// RESOLVE_BENEATH refuses to guess; try again.
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "openat2", Path: p, Err: err}
		}
		return fd, nil
	}
}

// openDir opens the layer's directory rel ("" is the root). With create,
// missing directories are made (0755, root-owned, as containerd does for
// parents a tar omits), each opened beneath the one before.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := openBeneath(u.root, rel)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	cur, err := openBeneath(u.root, ".")
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(rel, "/") {
		if err := unix.Mkdirat(cur, c, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, &os.PathError{Op: "mkdirat", Path: c, Err: err}
		}
		next, err := openBeneath(cur, c)
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// clearName removes what an earlier entry of the same layer left at base, so
// the new entry replaces it, as tar extraction does. A directory is
// removed only when empty.
func clearName(parent int, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "fstatat", Path: base, Err: err}
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(parent, base, flags); err != nil {
		return &os.PathError{Op: "replace", Path: base, Err: err}
	}
	return nil
}

func (u *unpacker) mkdir(parent int, base, name string, hdr *tar.Header) error {
	err := unix.Mkdirat(parent, base, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = clearName(parent, base); err == nil {
				err = unix.Mkdirat(parent, base, 0o700)
			}
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdirat", Path: base, Err: err}
	}
	fd, err := openBeneath(parent, base)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	u.dirs = append(u.dirs, dirTime{name, hdr.ModTime})
	return u.setMeta(fd, hdr)
}

func (u *unpacker) file(parent int, base string, hdr *tar.Header, r io.Reader) error {
	if err := clearName(parent, base); err != nil {
		return err
	}
	// O_EXCL|O_NOFOLLOW: the name was just cleared, so anything there now
	// is not ours; never write through it.
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: base, Err: err}
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if _, err := io.CopyBuffer(fileWriter{f}, r, u.buf); err != nil {
		return err
	}
	if err := u.setMeta(fd, hdr); err != nil {
		return err
	}
	u.size += (hdr.Size + 4095) &^ 4095
	return setTimesAt(parent, base, hdr.ModTime)
}

// fileWriter hides *os.File's ReadFrom, so io.CopyBuffer uses the
// unpacker's large buffer instead of 32 KiB copies.
type fileWriter struct{ f *os.File }

func (w fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (u *unpacker) symlink(parent int, base string, hdr *tar.Header) error {
	if err := clearName(parent, base); err != nil {
		return err
	}
	// The target is stored as written: it is only ever followed inside
	// the container, and every walk of ours refuses symlinks.
	if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
		return &os.PathError{Op: "symlinkat", Path: base, Err: err}
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lchown", Path: base, Err: err}
	}
	return setTimesAt(parent, base, hdr.ModTime)
}

func (u *unpacker) link(parent int, base string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	if target == "" {
		return errors.New("hard link to the layer root")
	}
	tdir, tbase := splitName(target)
	tparent, err := u.openDir(tdir, false)
	if err != nil {
		return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tparent)
	if err := clearName(parent, base); err != nil {
		return err
	}
	// Flags 0, not AT_SYMLINK_FOLLOW: a link to a symlink is a link to
	// the symlink itself.
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return &os.PathError{Op: "link to " + hdr.Linkname, Path: base, Err: err}
	}
	return nil
}

func (u *unpacker) fifo(parent int, base string, hdr *tar.Header) error {
	if err := clearName(parent, base); err != nil {
		return err
	}
	if err := unix.Mknodat(parent, base, unix.S_IFIFO|0o600, 0); err != nil {
		return &os.PathError{Op: "mkfifo", Path: base, Err: err}
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lchown", Path: base, Err: err}
	}
	// fchmodat follows a symlink, but base is the fifo just made, in a
	// directory only root can write.
	if err := unix.Fchmodat(parent, base, uint32(hdr.Mode)&0o777, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: base, Err: err}
	}
	return setTimesAt(parent, base, hdr.ModTime)
}

// whiteout makes the overlay whiteout for name in dir: a 0/0 character
// device hides name in the layers below.
func (u *unpacker) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q", name)
	}
	parent, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if err := clearName(parent, name); err != nil {
		return err
	}
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, int(unix.Mkdev(0, 0))); err != nil {
		return &os.PathError{Op: "mknod whiteout", Path: name, Err: err}
	}
	return nil
}

// opaque marks dir opaque: overlay then hides what the layers below have
// in it, keeping this layer's own entries.
func (u *unpacker) opaque(dir string) error {
	fd, err := u.openDir(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
		return fmt.Errorf("mark %q opaque: %w", dir, err)
	}
	return nil
}

// setMeta sets owner, mode and xattrs on an open file or directory.
// chown comes first: it clears the setuid and setgid bits that chmod then
// sets.
func (u *unpacker) setMeta(fd int, hdr *tar.Header) error {
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if !strings.HasPrefix(name, "user.") && name != "security.capability" {
			u.xattrs++
			continue
		}
		err := unix.Fsetxattr(fd, name, []byte(v), 0)
		if errors.Is(err, unix.ENOTSUP) {
			u.xattrs++
			continue
		}
		if err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func (u *unpacker) setTimes(name string, mtime time.Time) error {
	dir, base := splitName(name)
	parent, err := u.openDir(dir, false)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	return setTimesAt(parent, base, mtime)
}

func setTimesAt(parent int, base string, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(parent, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: base, Err: err}
	}
	return nil
}
