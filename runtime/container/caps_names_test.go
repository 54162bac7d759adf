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
}

// TestCapabilities checks the names a seccomp profile is compiled for.
func TestCapabilityNames(t *testing.T) {
	got, err := Capabilities([]string{"sys_admin"}, []string{"ALL"})
	if err != nil || len(got) != 1 || got[0] != "CAP_SYS_ADMIN" {
		t.Errorf("Capabilities(add sys_admin, drop ALL) = %v, %v; want [CAP_SYS_ADMIN]", got, err)
	}
	all, err := Capabilities([]string{"ALL"}, nil)
	if err != nil || !slices.Contains(all, "CAP_CHECKPOINT_RESTORE") || !slices.Contains(all, "CAP_BPF") {
		t.Errorf("Capabilities(add ALL) = %v, %v", all, err)
	}
	if _, err := Capabilities([]string{"NOPE"}, nil); err == nil {
		t.Error("Capabilities accepted an unknown name")
	}
}
