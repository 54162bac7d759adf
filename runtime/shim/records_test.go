package shim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRecordsRoundTrip(t *testing.T) {
	dir := AttemptDir(t.TempDir(), "app", 3)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadExit(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadExit before the exit: %v, want ErrNotExist", err)
	}
	st := &State{Name: "app", Attempt: 3, PID: 42, StartedAt: time.Date(2026, 11, 29, 21, 0, 0, 5, time.UTC)}
	e := &Exit{Name: "app", Attempt: 3, ExitCode: 137, Signal: 9, OOMKilled: true, FinishedAt: st.StartedAt.Add(time.Second)}
	if err := writeState(dir, st); err != nil {
		t.Fatal(err)
	}
	if err := writeExit(dir, e); err != nil {
		t.Fatal(err)
	}
	gotState, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	gotExit, err := ReadExit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, gotState); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(e, gotExit); diff != "" {
		t.Errorf("exit (-want +got):\n%s", diff)
	}
	// Nothing but the two records is left: no temp files.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{exitFile, stateFile}, names); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(dir, exitFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("exit record mode %v, %v", fi.Mode(), err)
	}
}

func TestWriteFileAtomicFailsCleanly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "such", "dir", "f")
	if err := WriteFileAtomic(missing, []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
