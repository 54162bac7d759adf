package container

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestSortedMounts(t *testing.T) {
	in := []Mount{
		{Destination: "/dev/shm"}, {Destination: "/etc/hosts"}, {Destination: "/sys"},
		{Destination: "/data/logs"}, {Destination: "/data"}, {Destination: "/etc/hosts", Source: "volume"},
	}
	var got []string
	for _, m := range sortedMounts(in) {
		got = append(got, m.Destination+"="+m.Source)
	}
	want := []string{"/sys=", "/data=", "/dev/shm=", "/etc/hosts=", "/data/logs=", "/etc/hosts=volume"}
	if !slices.Equal(got, want) {
		t.Errorf("sortedMounts = %v, want %v", got, want)
	}
}

func TestStartRejects(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	valid := Spec{ID: "c", Args: []string{"true"}, Lower: []string{"/nonexistent"}, Dir: t.TempDir()}
	tests := []struct {
		name string
		ctx  context.Context
		spec Spec
		want error
	}{
		{"cancelled context", cancelled, valid, context.Canceled},
		{"no command", context.Background(), Spec{ID: "c", Lower: []string{"/x"}, Dir: "/y"}, nil},
		{"empty mapping", context.Background(), Spec{ID: "c", Args: []string{"true"}, Lower: []string{"/x"}, Dir: "/y", UserNS: &IDMap{HostID: 100000}}, nil},
		{"unknown capability", context.Background(), Spec{ID: "c", Args: []string{"true"}, Lower: []string{"/x"}, Dir: "/y", CapAdd: []string{"NET_ADMINS"}}, nil},
	}
	for _, tt := range tests {
		_, err := Start(tt.ctx, &tt.spec)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: Start error %v, want %v", tt.name, err, tt.want)
		}
	}
}
