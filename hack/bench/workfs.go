package main

import (
	"os"
	"path/filepath"
	"strings"
)

// workFS describes the filesystem that holds dir, where every system keeps
// its writable layers, volumes and logs, e.g. "ext4 on /dev/vda, no
// journal". The journal matters for reading the figures: ext4 without one
// checks each free inode it considers for a recent deletion
// (recently_deleted in its inode allocator), so every directory and file a
// start creates costs more after many deletions, as in a benchmark that
// creates and removes pods all the time.
func workFS(dir string) string {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	fstype, source, ok := mountOf(string(mountinfo), dir)
	if !ok {
		return "unknown"
	}
	desc := fstype + " on " + source
	if fstype == "ext4" {
		if journaled, known := ext4Journal(source); known && journaled {
			desc += ", journal"
		} else if known {
			desc += ", no journal"
		}
	}
	return desc
}

// mountOf returns the filesystem type and source of the mount that holds
// path (absolute, without symlinks) in a /proc/PID/mountinfo text: the
// deepest mount point above it, the last one mounted there if several are.
func mountOf(mountinfo, path string) (fstype, source string, ok bool) {
	best := -1
	for line := range strings.Lines(mountinfo) {
		pre, post, found := strings.Cut(strings.TrimSpace(line), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 5 || len(g) < 2 {
			continue
		}
		point := unescapeMountinfo(f[4])
		if !under(path, point) || len(point) < best {
			continue
		}
		best, fstype, source, ok = len(point), g[0], unescapeMountinfo(g[1]), true
	}
	return fstype, source, ok
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) that the
// kernel writes for spaces, tabs, newlines and backslashes.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

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
