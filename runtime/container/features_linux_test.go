package container

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TestProbeFeatures checks the probes against the running kernel's version:
// lowerdir+ came with 6.8 and mount_setattr with 5.12.
func TestProbeFeatures(t *testing.T) {
	requireRoot(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Skipf("kernel release %q: %v", release, err)
	}
	atLeast := func(ma, mi int) bool { return major > ma || major == ma && minor >= mi }
	f := ProbeFeatures()
	if want := atLeast(6, 8); f.OverlayLowerdirFD != want {
		t.Errorf("kernel %s: OverlayLowerdirFD = %v, want %v", release, f.OverlayLowerdirFD, want)
	}
	if want := atLeast(5, 12); f.IDMappedMounts != want {
		t.Errorf("kernel %s: IDMappedMounts = %v, want %v", release, f.IDMappedMounts, want)
	}
}
