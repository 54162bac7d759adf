package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/shim"
	"github.com/peapod/peapod/runtime/userns"
)

func TestNewCollectsGarbage(t *testing.T) {
	base := t.TempDir()
	opts := Options{
		StateDir: filepath.Join(base, "state"), RootDir: filepath.Join(base, "root"), LogDir: filepath.Join(base, "log"),
		UsernsRange: userns.DefaultRange,
	}
	// A pod that survived (pod.json in the state dir), a pod whose state
	// went with a reboot (data on disk only), and a CreateSandbox that died
	// after allocating its range and making its state dir.
	live, gone, half := types.UID("live"), types.UID("gone"), types.UID("half")
	ids, err := userns.New(opts.StateDir, opts.UsernsRange)
	if err != nil {
		t.Fatal(err)
	}
	for _, uid := range []types.UID{live, gone, half} {
		if _, err := ids.Allocate(uid); err != nil {
			t.Fatal(err)
		}
		mkdir(t, opts.RootDir, "pods", string(uid), "volumes", "v")
	}
	mkdir(t, opts.StateDir, "pods", string(live))
	if err := os.WriteFile(filepath.Join(opts.StateDir, "pods", string(live), shim.PodFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	mkdir(t, opts.StateDir, "pods", string(half))

	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	exists := func(p ...string) bool { _, err := os.Stat(filepath.Join(p...)); return err == nil }
	if !exists(opts.RootDir, "pods", string(live)) || !exists(opts.StateDir, "pods", string(live)) {
		t.Error("GC removed a live pod")
	}
	for _, uid := range []types.UID{gone, half} {
		if exists(opts.RootDir, "pods", string(uid)) || exists(opts.StateDir, "pods", string(uid)) {
			t.Errorf("pod %s left behind", uid)
		}
	}
	leases, err := os.ReadDir(filepath.Join(opts.StateDir, "userns"))
	if err != nil || len(leases) != 1 {
		t.Errorf("user-ID leases after GC: %v, %v; want only the live pod's", leases, err)
	}
}

func mkdir(t *testing.T, p ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(p...), 0o700); err != nil {
		t.Fatal(err)
	}
}
