package netsetup

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

const crashChildEnv = "NETSETUP_CRASH_CHILD_DIR"

// TestDiskStoreKilled kills processes that allocate and release addresses
// in a loop at random points, then checks that no lease reported to a
// caller was lost, that no UID holds two addresses, and that every UID gets
// its address back.
func TestDiskStoreKilled(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	held := make(map[types.UID]netip.Addr) // what the children reported, in order
	unknown := make(map[types.UID]bool)    // interrupted by a kill
	for round := range 8 {
		for uid, addr := range runCrashChild(t, dir, round, unknown) {
			if addr.IsValid() {
				held[uid] = addr
			} else {
				delete(held, uid)
			}
		}
	}
	s, err := newDiskStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := mustAllocator(t, "10.77.0.0/24", s)
	leases, err := a.leases()
	if err != nil {
		t.Fatal(err)
	}
	byUID := make(map[types.UID]netip.Addr)
	for addr, uid := range leases {
		if prev, dup := byUID[uid]; dup {
			t.Errorf("pod %q holds both %s and %s", uid, prev, addr)
		}
		byUID[uid] = addr
	}
	for uid, addr := range held {
		if unknown[uid] {
			continue
		}
		if got, err := a.allocate(uid); err != nil || got != addr {
			t.Errorf("pod %s: allocate = %s, %v; want its reported lease %s", uid, got, err, addr)
		}
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(temps) != 0 {
		t.Errorf("temporary files left after a scan: %v", temps)
	}
	t.Logf("%d leases reported and kept over 8 kills, %d leases on disk", len(held), len(leases))
}

// runCrashChild starts a child on dir, kills it with SIGKILL after a random
// delay, and returns what it reported: the address leased to each UID, or
// the zero Addr for a release. The operation the kill interrupted has an
// unknown outcome: its UID is left out.
func runCrashChild(t *testing.T, dir string, round int, unknown map[types.UID]bool) map[types.UID]netip.Addr {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskStoreKilled$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("NETSETUP_CRASH_ROUND=%d", round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Duration(randomInt(t, 20, 80))*time.Millisecond, func() { cmd.Process.Kill() })
	defer timer.Stop()
	reported := make(map[types.UID]netip.Addr)
	var pending types.UID
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		op, rest, _ := strings.Cut(sc.Text(), " ")
		uid, addr, _ := strings.Cut(rest, " ")
		switch op {
		case "begin":
			delete(reported, types.UID(uid))
			pending = types.UID(uid)
		case "leased":
			reported[types.UID(uid)] = netip.MustParseAddr(addr)
		case "released":
			reported[types.UID(uid)] = netip.Addr{}
		}
		if op != "begin" {
			pending = ""
		}
	}
	if pending != "" {
		unknown[pending] = true
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child was not killed: %v (make the loop longer)", err)
	}
	return reported
}

// crashChild leases and releases addresses until it is killed, reporting
// each completed operation on stdout.
func crashChild(dir string) {
	s, err := newDiskStore(dir)
	if err != nil {
		panic(err)
	}
	a, err := newAllocator(netip.MustParsePrefix("10.77.0.0/24"), s)
	if err != nil {
		panic(err)
	}
	round := os.Getenv("NETSETUP_CRASH_ROUND")
	for i := 0; ; i++ {
		uid := types.UID(fmt.Sprintf("r%s-%d", round, i%20))
		fmt.Printf("begin %s\n", uid)
		if i%3 == 2 {
			if err := a.release(uid); err != nil {
				panic(err)
			}
			fmt.Printf("released %s\n", uid)
			continue
		}
		addr, err := a.allocate(uid)
		if err != nil {
			panic(err)
		}
		fmt.Printf("leased %s %s\n", uid, addr)
	}
}
