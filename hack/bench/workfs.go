package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// workFS describes the filesystem that holds dir, where every system keeps
// its writable layers, volumes and logs, e.g. "ext4 on /dev/vda, no
// journal". The journal matters for reading the figures: ext4 without one
// checks each free inode it considers for a recent deletion
// (recently_deleted in its inode allocator), so every directory and file a
// start creates costs more after many deletions, as in a benchmark that
// creates and removes pods all the time.
func workFS(dir string) string {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "unknown"
	}
	m := mountOf(mounts, dir)
	if m == nil {
		return "unknown"
	}
	desc := m.FSType + " on " + m.Source
	if m.FSType == "ext4" {
		if journaled, known := ext4Journal(m.Source); known && journaled {
			desc += ", journal"
		} else if known {
			desc += ", no journal"
		}
	}
	return desc
}

// mountOf returns the mount that holds path (absolute, without symlinks):
// the deepest mount point above it, and of several mounts there the last
// one, which hides the others (mountinfo lists mounts in mount order).
func mountOf(mounts []*mountinfo.Info, path string) *mountinfo.Info {
	var best *mountinfo.Info
	for _, m := range mounts {
		if !under(path, m.Mountpoint) || best != nil && len(m.Mountpoint) < len(best.Mountpoint) {
			continue
		}
		best = m
	}
	return best
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// ext4Journal reports whether the ext4 filesystem on the block device
// source has a journal, known only when the kernel lists the filesystem
// under /sys/fs/ext4: jbd2 then lists the journal as DEV-INODE in
// /proc/fs/jbd2.
func ext4Journal(source string) (journaled, known bool) {
	dev := source
	if real, err := filepath.EvalSymlinks(source); err == nil {
		dev = real // /dev/mapper/NAME -> /dev/dm-N, as /sys names it
	}
	dev = filepath.Base(dev)
	if _, err := os.Stat(filepath.Join("/sys/fs/ext4", dev)); err != nil {
		return false, false
	}
	journals, _ := filepath.Glob(filepath.Join("/proc/fs/jbd2", dev+"-*"))
	return len(journals) > 0, true
}
