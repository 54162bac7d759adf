package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Files in a pod's state directory that belong to the shim.
const (
	SocketFile = "shim.sock"
	PIDFile    = "shim.pid"
	LogFile    = "shim.log"
	stateFile  = "state.json"
	exitFile   = "exit.json"
)

// State is the record of a started container attempt, written before the
// start is reported.
type State struct {
	Name    string `json:"name"`
	Attempt int    `json:"attempt"`
	// PID is the host PID of the container's init process.
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

// Exit is the record of a finished container attempt, written durably
// before the exit is reported to anyone.
type Exit struct {
	Name    string `json:"name"`
	Attempt int    `json:"attempt"`
	// ExitCode follows the shell convention: 128+Signal for a signal death.
	ExitCode int `json:"exitCode"`
	// Signal is the signal that killed the process, 0 if it exited.
	Signal int `json:"signal,omitempty"`
	// OOMKilled is set when the container's memory cgroup recorded an OOM
	// kill during the attempt.
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
	// Message says why the shim ended the attempt itself, e.g. "shim died".
	Message string `json:"message,omitempty"`
}

// AttemptDir returns the directory holding one attempt's records:
// <podDir>/containers/<name>/<attempt>.
func AttemptDir(podDir, name string, attempt int) string {
	return filepath.Join(ContainersDir(podDir), name, strconv.Itoa(attempt))
}

// ContainersDir returns the directory holding every container's records.
func ContainersDir(podDir string) string {
	return filepath.Join(podDir, "containers")
}

// ReadState reads an attempt's state record; it returns an error wrapping
// os.ErrNotExist when the attempt never started.
func ReadState(attemptDir string) (*State, error) {
	var s State
	if err := readJSON(filepath.Join(attemptDir, stateFile), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ReadExit reads an attempt's exit record; it returns an error wrapping
// os.ErrNotExist while the attempt runs (or when its shim died first).
func ReadExit(attemptDir string) (*Exit, error) {
	var e Exit
	if err := readJSON(filepath.Join(attemptDir, exitFile), &e); err != nil {
		return nil, err
	}
	return &e, nil
}

func writeState(attemptDir string, s *State) error {
	return writeJSON(filepath.Join(attemptDir, stateFile), s)
}

func writeExit(attemptDir string, e *Exit) error {
	return writeJSON(filepath.Join(attemptDir, exitFile), e)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// writeJSON replaces path with v's encoding durably: a reader sees the old
// content or the new, never a torn file, and once writeJSON returns the new
// content survives a crash of the machine (when path is on disk).
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return WriteFileAtomic(path, b, 0o600)
}

// WriteFileAtomic writes data to a temp file beside path, syncs it, renames
// it over path and syncs the directory, in that order: the rename is
// durable only once the directory is synced, and it must not become
// visible before the data it points at is on disk.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = errors.Join(f.Chmod(perm), writeAndSync(f, data), f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func writeAndSync(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
