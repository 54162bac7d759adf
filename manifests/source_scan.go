package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
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
// cannot be used yields one error naming the directory. A missing one
// yields no pods: kubelet runs no static pods from a missing directory
// either. One refused for its owner or mode (an operator's chmod slip)
// keeps the pods of the files last read from it, held as a refused file's
// are, so a slip tears nothing down.
func (sc *scanner) scan() Snapshot {
	dir, entries, err := sc.list()
	var unsafe *unsafeError
	if errors.As(err, &unsafe) {
		return sc.heldSnapshot(err)
	}
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
		sc.refresh(dir, e, st)
	}
	return sc.snapshot(entries)
}

// checkedDir is the manifest directory as one scan resolved and checked it.
type checkedDir struct {
	path string // free of symlinks
	info fs.FileInfo
}

// list returns the manifest directory, resolved, and the manifest
// candidates in it, sorted by name, after checking that only root or the
// agent can add or replace them: the directory itself, every directory on
// the way to it from /, and the directories holding the symlinks on the
// way, as sudo and sshd check the paths they trust.
func (sc *scanner) list() (checkedDir, []fs.DirEntry, error) {
	root, err := os.Lstat("/")
	if err != nil {
		return checkedDir{}, nil, err
	}
	path, fi, err := resolveChecked("/", root, sc.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return checkedDir{}, nil, fmt.Errorf("directory does not exist; no pods run until it is created: %w", err)
	}
	if err != nil {
		return checkedDir{}, nil, err
	}
	if !fi.IsDir() {
		return checkedDir{}, nil, fmt.Errorf("refusing %s: it is %s, not a directory", path, kindOf(fi.Mode()))
	}
	if err := checkWriters(path, fi); err != nil {
		return checkedDir{}, nil, err
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return checkedDir{}, nil, err
	}
	return checkedDir{path: path, info: fi}, slices.DeleteFunc(entries, func(e fs.DirEntry) bool {
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

// refresh brings st up to date with the file e names in dir, decoding it
// only when it is a different version from the one decoded last. A symlink
// is resolved with the same checks as the directory. The Lstat of the
// resolved file tells whether it changed, and keeps special files from
// being opened; the owner and mode are checked on the open file the
// manifest is read from (readChecked).
func (sc *scanner) refresh(dir checkedDir, e fs.DirEntry, st *fileState) {
	path, fi, err := resolveChecked(dir.path, dir.info, e.Name())
	if err != nil {
		st.id, st.err = fileID{}, err
		return
	}
	if !fi.Mode().IsRegular() {
		st.id, st.err = fileID{}, fmt.Errorf("refusing %s: it is %s, not a regular file", path, kindOf(fi.Mode()))
		return
	}
	if idOf(fi) == st.id {
		return
	}
	id, data, err := readChecked(path)
	if err != nil {
		st.id, st.err = fileID{}, err
		return
	}
	st.id = id
	// Named as the user put it in the directory, not by its target.
	pods, err := sc.policy.Decode(filepath.Join(sc.dir, e.Name()), data)
	if err != nil {
		st.err = err
		return
	}
	st.good, st.err = pods, nil
}

// checkWriters refuses path unless only root or the agent's own user can
// write it. Accepting the agent's euid as well as root lets the source run
// unprivileged (tests, "peapod validate") without weakening it as root.
func checkWriters(path string, fi fs.FileInfo) error {
	if uid := ownerOf(fi); !trustedUID(uid) {
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

// heldSnapshot is the snapshot of a directory refused with err: the last
// good pods of every file known, held, and err.
func (sc *scanner) heldSnapshot(err error) Snapshot {
	snap := Snapshot{Errors: []FileError{{File: sc.dir, Err: err}}, RefusedDir: sc.dir}
	names := slices.Sorted(maps.Keys(sc.files))
	definedIn := make(map[string]bool)
	for _, name := range names {
		for _, p := range sc.files[name].good {
			if definedIn[p.Key()] {
				continue
			}
			definedIn[p.Key()] = true
			c := *p
			c.Held = true
			snap.Pods = append(snap.Pods, &c)
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
