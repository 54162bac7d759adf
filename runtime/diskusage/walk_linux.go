// Package diskusage measures the disk space that directory trees hold, as
// du does: the blocks allocated to every file, directory and symlink,
// hard-linked files counted once. It is how peapod sees a pod's local
// ephemeral storage (emptyDirs, writable layers, logs) to enforce its
// limits.
//
// The trees belong to containers, which may change them during a walk.
// The walk therefore never follows a symlink, never leaves the filesystem
// it started on, and opens each directory relative to its parent's
// descriptor with O_NOFOLLOW, so that a directory swapped for a symlink
// cannot lead it out of the tree. Its cost is bounded by Limits.
package diskusage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Default limits of one Walker: enough for a million small files, and a
// depth no real tree reaches, with a descriptor open per level.
const (
	DefaultMaxEntries = 1 << 20
	DefaultMaxDepth   = 512
)

// namesPerRead bounds the names held in memory for one directory.
const namesPerRead = 1024

// Limits bound the cost of a Walker across all its walks.
type Limits struct {
	// MaxEntries is how many directory entries are examined in all; zero
	// means DefaultMaxEntries.
	MaxEntries int
	// MaxDepth is how deep below its root a walk descends; zero means
	// DefaultMaxDepth.
	MaxDepth int
}

// Usage is what one walk found.
type Usage struct {
	// Bytes is the space allocated to the tree (st_blocks × 512): a
	// sparse file counts what it holds, not its length.
	Bytes int64
	// Inodes counts the files, directories and links, each once.
	Inodes int64
	// Truncated is set when a limit stopped the walk: Bytes and Inodes
	// are then lower bounds.
	Truncated bool
}

// Walker measures trees, sharing its limits and its record of hard-linked
// files across its walks, so that a file linked into two trees of a pod
// counts once. The zero value uses the default limits. A Walker is not
// safe for concurrent use.
type Walker struct {
	Limits Limits

	entries int
	seen    map[fileID]bool
}

type fileID struct{ dev, ino uint64 }

// Walk returns the usage of the tree at dir. A dir that does not exist
// holds nothing. Entries that vanish during the walk are skipped.
func (w *Walker) Walk(ctx context.Context, dir string) (Usage, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return Usage{}, nil
	}
	if err != nil {
		return Usage{}, fmt.Errorf("open %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return Usage{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	t := &tree{w: w, ctx: ctx, dev: st.Dev}
	t.count(&st)
	err = t.walkDir(fd, dir, 0)
	return t.usage, err
}

// tree is one walk in progress.
type tree struct {
	w     *Walker
	ctx   context.Context
	dev   uint64
	usage Usage
	// stopped is set once the Walker's entries are used up.
	stopped bool
}

// count adds one inode, unless it is a hard link already counted.
func (t *tree) count(st *unix.Stat_t) {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{dev: st.Dev, ino: st.Ino}
		if t.w.seen[id] {
			return
		}
		if t.w.seen == nil {
			t.w.seen = make(map[fileID]bool)
		}
		t.w.seen[id] = true
	}
	t.usage.Bytes += st.Blocks * 512
	t.usage.Inodes++
}

// walkDir counts the entries of the directory open as fd, which it closes,
// and descends into its subdirectories.
func (t *tree) walkDir(fd int, path string, depth int) error {
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	for {
		names, err := f.Readdirnames(namesPerRead)
		for _, name := range names {
			if err := t.entry(fd, path, name, depth); err != nil {
				return err
			}
			if t.stopped {
				return nil
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read directory %s: %w", path, err)
		}
		if err := t.ctx.Err(); err != nil {
			return err
		}
	}
}

// entry counts one entry of the directory open as dirfd, and its subtree.
func (t *tree) entry(dirfd int, dir, name string, depth int) error {
	if t.w.entries >= cmp.Or(t.w.Limits.MaxEntries, DefaultMaxEntries) {
		t.stopped, t.usage.Truncated = true, true
		return nil
	}
	t.w.entries++
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s/%s: %w", dir, name, err)
	}
	t.count(&st)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != t.dev {
		return nil
	}
	if depth+1 > cmp.Or(t.w.Limits.MaxDepth, DefaultMaxDepth) {
		t.usage.Truncated = true
		return nil
	}
	// O_NOFOLLOW: the container may have replaced the directory by a
	// symlink since the stat; the open then fails instead of following it.
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.ELOOP):
		return nil
	case err != nil:
		return fmt.Errorf("open %s/%s: %w", dir, name, err)
	}
	return t.walkDir(fd, dir+"/"+name, depth+1)
}
