package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/shim"
)

func TestContainerStatesFromRecords(t *testing.T) {
	dir := t.TempDir()
	pod := testPod()
	c := &pod.Spec.Containers[0]
	t0 := time.Date(2026, 11, 29, 21, 0, 0, 0, time.UTC)
	write := func(attempt int, exit *shim.Exit) {
		adir := shim.AttemptDir(dir, c.Name, attempt)
		if err := os.MkdirAll(adir, 0o700); err != nil {
			t.Fatal(err)
		}
		st := shim.State{Name: c.Name, Attempt: attempt, PID: 100 + attempt, StartedAt: t0.Add(time.Duration(attempt) * time.Minute)}
		writeJSONFile(t, filepath.Join(adir, "state.json"), st)
		if exit != nil {
			writeJSONFile(t, filepath.Join(adir, "exit.json"), exit)
		}
	}
	write(0, &shim.Exit{ExitCode: 0, FinishedAt: t0.Add(time.Second)})
	write(1, &shim.Exit{ExitCode: 137, Signal: 9, OOMKilled: true, FinishedAt: t0.Add(2 * time.Minute)})
	write(2, nil)
	// An attempt directory without a state record never ran.
	os.MkdirAll(shim.AttemptDir(dir, c.Name, 3), 0o700)

	running := map[string]shim.Status{c.Name: {State: shim.State{Name: c.Name, Attempt: 2, PID: 102}}}
	got := containerStates(dir, pod.UID, c, true, running)
	want := []reconcile.ContainerState{
		{Name: "app", Attempt: 2, ID: "peapod://1234/app/2", Image: "rootfs:/img", Phase: reconcile.ContainerRunning, PID: 102, StartedAt: t0.Add(2 * time.Minute)},
		{Name: "app", Attempt: 1, ID: "peapod://1234/app/1", Image: "rootfs:/img", Phase: reconcile.ContainerExited,
			StartedAt: t0.Add(time.Minute), FinishedAt: t0.Add(2 * time.Minute), ExitCode: 137, Signal: 9, Reason: "OOMKilled"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("live shim (-want +got):\n%s", diff)
	}

	os.RemoveAll(shim.AttemptDir(dir, c.Name, 3))
	got = containerStates(dir, pod.UID, c, false, nil)
	if len(got) != 2 {
		t.Fatalf("dead shim: %d states, want 2", len(got))
	}
	dead := got[0]
	if dead.Phase != reconcile.ContainerExited || dead.ExitCode != 137 || dead.Reason != "Error" || dead.Message != "shim died" {
		t.Errorf("attempt of a dead shim: %+v", dead)
	}
	if got[1].Reason != "OOMKilled" {
		t.Errorf("attempt 1: %+v", got[1])
	}
	got = containerStates(dir, pod.UID, c, true, nil)
	if got[0].Phase != reconcile.ContainerExited || got[0].Message != "shim lost track of the container" {
		t.Errorf("attempt unknown to a live shim: %+v", got[0])
	}
}

func TestSetExitReason(t *testing.T) {
	for _, tt := range []struct {
		exit shim.Exit
		want string
	}{
		{shim.Exit{ExitCode: 0}, "Completed"},
		{shim.Exit{ExitCode: 1}, "Error"},
		{shim.Exit{ExitCode: 143, Signal: 15}, "Error"},
		{shim.Exit{ExitCode: 137, Signal: 9, OOMKilled: true}, "OOMKilled"},
	} {
		var cs reconcile.ContainerState
		setExit(&cs, &tt.exit)
		if cs.Reason != tt.want || cs.Phase != reconcile.ContainerExited {
			t.Errorf("exit %+v: reason %q phase %q, want %q", tt.exit, cs.Reason, cs.Phase, tt.want)
		}
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
