package container

import (
	"slices"
	"testing"
)

func TestDefaultCapabilities(t *testing.T) {
	got := DefaultCapabilities()
	slices.Sort(got)
	want := []string{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
		"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"}
	if !slices.Equal(got, want) {
		t.Errorf("DefaultCapabilities() = %v, want %v", got, want)
	}
	if len(capNames) != 41 {
		t.Errorf("capNames has %d capabilities, want 41 (CAP_CHOWN..CAP_CHECKPOINT_RESTORE)", len(capNames))
	}
}
