package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// scanner reads a manifest directory and remembers, per file, the version it
// decoded last, so that a rescan decodes only the files that changed and can
// hold the last good pods of a file that broke. Not safe for concurrent use.
type scanner struct {
	dir    string
	policy Policy
	files  map[string]*fileState // by file name
}

// fileState is what the scanner knows about one manifest file.
type fileState struct {
	// id identifies the version last decoded; the zero value forces a decode.
	id fileID
	// good holds the pods of the last version that decoded, if any.
	good []*Pod
	// err says why the current version is rejected; nil when good is current.
	err error
}

func newScanner(dir string, policy Policy) *scanner {
	return &scanner{dir: dir, policy: policy, files: make(map[string]*fileState)}
}

// scan reads the directory and returns the desired state. A directory that
// cannot be used yields no pods and one error naming the directory: kubelet
// runs no static pods from a missing directory either.
func (sc *scanner) scan() Snapshot {
	entries, err := sc.list()
	if err != nil {
		clear(sc.files)
		return Snapshot{Errors: []FileError{{File: sc.dir, Err: err}}}
	}
	sc.forgetRemoved(entries)
	for _, e := range entries {
		st := sc.files[e.Name()]
		if st == nil {
			st = &fileState{}
			sc.files[e.Name()] = st
		}
		sc.refresh(e, st)
	}
	return sc.snapshot(entries)
}

// list returns the manifest candidates in the directory, sorted by name,
// after checking that only root or the agent can add or replace them.
func (sc *scanner) list() ([]fs.DirEntry, error) {
	fi, err := os.Stat(sc.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("directory does not exist; no pods run until it is created: %w", err)
	}
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("refusing %s: it is %s, not a directory", sc.dir, kindOf(fi.Mode()))
	}
	if err := checkWriters(sc.dir, fi); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(sc.dir)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(entries, func(e fs.DirEntry) bool {
		return e.IsDir() || !isManifestName(e.Name())
	}), nil
}

// isManifestName reports whether a file of this name is read. Dot-files are
// skipped, which covers the "..data" layout of Kubernetes' atomic writer
// and editors' hidden swap files; requiring an extension skips the rest of
// what editors leave behind ("web.yaml~", "#web.yaml#", vim's "4913",
// "web.yaml.swp", "web.yaml.bak").
func isManifestName(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// forgetRemoved drops the state of files no longer in the directory, so
// their held pods go with them. entries must be sorted by name.
func (sc *scanner) forgetRemoved(entries []fs.DirEntry) {
	for name := range sc.files {
		_, present := slices.BinarySearchFunc(entries, name, func(e fs.DirEntry, name string) int {
			return strings.Compare(e.Name(), name)
		})
		if !present {
			delete(sc.files, name)
		}
	}
}

// refresh brings st up to date with the file e names, decoding it only when
// it is a different version from the one decoded last. The check and the
// read resolve the path separately: replacing the file in between takes
// write access to its directory, which the checks grant only to root and
// the agent, and taking the identity before the read means a change in
// between is decoded again at the next scan. DecodeFile opens with
// O_NONBLOCK, so even such a swap to a FIFO cannot block the scan.
func (sc *scanner) refresh(e fs.DirEntry, st *fileState) {
	path := filepath.Join(sc.dir, e.Name())
	id, err := checkFile(path, e.Type()&fs.ModeSymlink != 0)
	if err != nil {
		st.id, st.err = fileID{}, err
		return
	}
	if id == st.id {
		return
	}
	st.id = id
	pods, err := sc.policy.DecodeFile(path)
	if err != nil {
		st.err = err
		return
	}
	st.good, st.err = pods, nil
}

// checkFile returns the identity of the regular file that path names,
// directly or through symlinks, once it is sure that only root or the agent
// can change it: the file, and for a symlink the directory holding the
// target, must not be writable by anyone else. It never opens the file, so a
// FIFO or a device cannot block or feed the scan.
func checkFile(path string, symlink bool) (fileID, error) {
	target := path
	if symlink {
		var err error
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return fileID{}, fmt.Errorf("follow symlink: %w", err)
		}
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return fileID{}, fmt.Errorf("refusing %s: it is %s, not a regular file", target, kindOf(fi.Mode()))
	}
	if err := checkWriters(target, fi); err != nil {
		return fileID{}, err
	}
	if symlink {
		if err := checkDir(filepath.Dir(target)); err != nil {
			return fileID{}, err
		}
	}
	return idOf(fi), nil
}

// checkDir checks the directory holding a symlink's target, where whoever
// can write could swap the file for another.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	return checkWriters(dir, fi)
}

// checkWriters refuses path unless only root or the agent's own user can
// write it. Accepting the agent's euid as well as root lets the source run
// unprivileged (tests, "peapod validate") without weakening it as root.
func checkWriters(path string, fi fs.FileInfo) error {
	if uid := ownerOf(fi); uid != 0 && int(uid) != os.Geteuid() {
		return &unsafeError{path: path, reason: fmt.Sprintf("it is owned by uid %d", uid), fix: "chown root"}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &unsafeError{path: path, reason: fmt.Sprintf("mode %#o lets other users write it", uint32(perm)), fix: "chmod go-w"}
	}
	return nil
}

// unsafeError refuses a manifest, or the directory holding one, that users
// other than root and the agent can write.
type unsafeError struct {
	path   string
	reason string
	fix    string // command that makes path safe, without the path
}

func (e *unsafeError) Error() string {
	return fmt.Sprintf("refusing %s: %s, and whoever can write the manifests owns this host: %s %s",
		e.path, e.reason, e.fix, e.path)
}

// kindOf describes a file type for an error message.
func kindOf(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// snapshot assembles the desired state from the files' states. Files are
// visited in name order, so when two files define the same pod the
// lexically first one wins, whatever the order they appeared in.
func (sc *scanner) snapshot(entries []fs.DirEntry) Snapshot {
	var snap Snapshot
	definedIn := make(map[string]string) // pod key → file name
	for _, e := range entries {
		st, path := sc.files[e.Name()], filepath.Join(sc.dir, e.Name())
		if st.err != nil {
			snap.Errors = append(snap.Errors, FileError{File: path, Err: st.err})
		}
		for _, p := range st.pods() {
			if first, ok := definedIn[p.Key()]; ok {
				err := fmt.Errorf("%s: pod %s is already defined in %s; ignoring this one", path, p.Key(), first)
				snap.Errors = append(snap.Errors, FileError{File: path, Err: err})
				continue
			}
			definedIn[p.Key()] = e.Name()
			snap.Pods = append(snap.Pods, p)
		}
	}
	slices.SortFunc(snap.Pods, func(a, b *Pod) int { return strings.Compare(a.Key(), b.Key()) })
	return snap
}

// pods returns the pods the file contributes: its current ones, or, while
// it is rejected, copies of its last good ones marked Held.
func (st *fileState) pods() []*Pod {
	if st.err == nil {
		return st.good
	}
	held := make([]*Pod, len(st.good))
	for i, p := range st.good {
		c := *p
		c.Held = true
		held[i] = &c
	}
	return held
}
