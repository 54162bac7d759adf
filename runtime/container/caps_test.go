package container

import (
	"testing"

	"github.com/moby/sys/capability"
)

func TestContainerCaps(t *testing.T) {
	netBind := capsOf(capability.CAP_NET_BIND_SERVICE)
	tests := []struct {
		name      string
		add, drop []string
		want      capSet
	}{
		{"default", nil, nil, defaultCaps},
		{"add", []string{"NET_ADMIN"}, nil, defaultCaps | capsOf(capability.CAP_NET_ADMIN)},
		{"add with prefix, any case", []string{"cap_sys_ptrace", "Sys_Time"}, nil,
			defaultCaps | capsOf(capability.CAP_SYS_PTRACE, capability.CAP_SYS_TIME)},
		{"drop", nil, []string{"CHOWN", "CAP_KILL"}, defaultCaps &^ capsOf(capability.CAP_CHOWN, capability.CAP_KILL)},
		{"drop ALL", nil, []string{"ALL"}, 0},
		{"drop all, lower case", nil, []string{"all"}, 0},
		{"drop ALL, add one", []string{"NET_BIND_SERVICE"}, []string{"ALL"}, netBind},
		{"add ALL", []string{"ALL"}, nil, allCaps},
		{"add ALL, drop one", []string{"ALL"}, []string{"SYS_ADMIN"}, allCaps &^ capsOf(capability.CAP_SYS_ADMIN)},
		{"add and drop ALL: drop wins", []string{"ALL"}, []string{"ALL"}, 0},
		{"added and dropped: dropped", []string{"NET_ADMIN"}, []string{"NET_ADMIN"}, defaultCaps},
		{"drop what is not there", nil, []string{"SYS_ADMIN"}, defaultCaps},
	}
	for _, tt := range tests {
		got, err := containerCaps(tt.add, tt.drop)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: containerCaps(%q, %q) = %#x, want %#x", tt.name, tt.add, tt.drop, got, tt.want)
		}
	}
}

func TestContainerCapsUnknown(t *testing.T) {
	for _, tt := range []struct{ add, drop []string }{
		{add: []string{"NET_ADMINS"}},
		{drop: []string{"CAP_"}},
		{add: []string{"CAP_CAP_NET_ADMIN"}},
		{drop: []string{""}},
	} {
		if got, err := containerCaps(tt.add, tt.drop); err == nil {
			t.Errorf("containerCaps(%q, %q) = %#x, want an error", tt.add, tt.drop, got)
		}
	}
}

// TestDefaultCaps pins the default set to the one containerd and docker
// give, as /proc/PID/status shows it.
func TestDefaultCaps(t *testing.T) {
	if defaultCaps != 0xa80425fb {
		t.Errorf("defaultCaps = %#x, want 0xa80425fb", defaultCaps)
	}
}
