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

// Exit is the record of a finished container attempt, written atomically
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

// writeJSON replaces path with v's encoding atomically: a reader sees the
// old content or the new, never a torn file.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return WriteFileAtomic(path, b, 0o600)
}

// WriteFileAtomic writes data to a temp file beside path and renames it
// over path, so that a reader, or a process that crashed mid-write and
// restarted, sees the old content or the new, never a torn file.
//
// It does not fsync. Everything written this way is runtime state under
// the state directory (a tmpfs such as /run/peapod) that describes
// processes, namespaces and mounts which do not survive a reboot: a crash
// of the agent or a shim keeps the page cache, and after a crash of the
// machine the state is collected, not trusted. A sync would cost every
// start several milliseconds on a disk-backed state directory and buy
// nothing.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	err = errors.Join(f.Chmod(perm), werr, f.Close())
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
