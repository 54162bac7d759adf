package manifests

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxSymlinks bounds the symlinks one resolution follows, as the kernel's
// limit of 40 does.
const maxSymlinks = 40

// resolveChecked resolves rel, relative to the directory dir (whose
// FileInfo is info) or absolute, following symlinks as the kernel would.
// It refuses the path unless only root or the agent can change what it
// resolves to: whoever can write a directory the resolution passes through
// can put another file, directory or symlink in the place of the entry
// taken from it (see checkEntry). Directories are checked top-down, so
// each is known to be the one its checked parent holds. It returns the
// resolved path, free of symlinks, and the Lstat of its last component,
// which it does not check: the caller decides what that must be.
//
// dir must be clean, absolute and free of symlinks, and already checked.
func resolveChecked(dir string, info fs.FileInfo, rel string) (string, fs.FileInfo, error) {
	rest := []string{rel}
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if strings.Contains(name, "/") {
			if filepath.IsAbs(name) {
				root, err := os.Lstat("/")
				if err != nil {
					return "", nil, err
				}
				dir, info = "/", root
			}
			rest = append(strings.Split(name, "/"), rest...)
			continue
		}
		switch name {
		case "", ".":
			continue
		case "..":
			// dir is free of symlinks, so its parent is the lexical one.
			parent, err := os.Lstat(filepath.Dir(dir))
			if err != nil {
				return "", nil, err
			}
			dir, info = filepath.Dir(dir), parent
			continue
		}
		next := filepath.Join(dir, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", nil, err
		}
		if err := checkEntry(dir, info, next, fi); err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			dir, info = next, fi
			continue
		}
		if links++; links > maxSymlinks {
			return "", nil, fmt.Errorf("resolve %s: %w", next, syscall.ELOOP)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", nil, err
		}
		// The symlink needs no check of its own: nobody can change a
		// symlink, only replace it, which checkEntry has ruled out.
		rest = append([]string{target}, rest...)
	}
	return dir, info, nil
}

// checkEntry refuses the entry next of the directory dir unless only root
// or the agent can replace it: dir must belong to one of them and be
// writable by nobody else, with one exception. In a directory with the
// sticky bit, such as /tmp, only the owner of an entry and of the directory
// can rename or remove the entry, so there an entry of root or the agent is
// safe however writable the directory is. (Others can add entries there;
// the manifest directory itself gets no such exception.)
func checkEntry(dir string, dirInfo fs.FileInfo, next string, fi fs.FileInfo) error {
	if uid := ownerOf(dirInfo); !trustedUID(uid) {
		return &unsafeError{path: dir, reason: fmt.Sprintf("it holds %s and is owned by uid %d", next, uid), fix: "chown root"}
	}
	perm := dirInfo.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	if dirInfo.Mode()&fs.ModeSticky == 0 {
		return &unsafeError{path: dir, reason: fmt.Sprintf("it holds %s and its mode %#o lets other users write it", next, uint32(perm)), fix: "chmod go-w"}
	}
	if uid := ownerOf(fi); !trustedUID(uid) {
		return &unsafeError{path: next, reason: fmt.Sprintf("it is owned by uid %d in %s, which other users can write", uid, dir), fix: "chown root"}
	}
	return nil
}

// trustedUID reports whether uid is root or the agent's own user.
func trustedUID(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid()
}

// readChecked reads the manifest at path, which must name a regular file
// directly (O_NOFOLLOW), once it has checked that only root or the agent
// can write it. The check and the read use the same open file, so the file
// read is the file checked, whatever happens to the path in between. It
// returns the identity of that file.
//
// O_NONBLOCK keeps a FIFO swapped in since the caller's Lstat from blocking
// the open; callers check with Lstat first that the path is a regular file,
// so a device is not opened (some act on open).
func readChecked(path string) (fileID, []byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return fileID{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, nil, err
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, nil, fmt.Errorf("refusing %s: it is %s, not a regular file", path, kindOf(fi.Mode()))
	}
	if err := checkWriters(path, fi); err != nil {
		return fileID{}, nil, err
	}
	data, err := readLimited(f, path)
	if err != nil {
		return fileID{}, nil, err
	}
	return idOf(fi), data, nil
}
