package main

import (
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestMountOf(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/", FSType: "ext4", Source: "/dev/vda"},
		{Mountpoint: "/tmp", FSType: "tmpfs", Source: "tmpfs"},
		{Mountpoint: "/tmp/bench work", FSType: "ext4", Source: "/dev/loop0"},
		{Mountpoint: "/tmpx", FSType: "tmpfs", Source: "other"},
		{Mountpoint: "/tmp", FSType: "tmpfs", Source: "over"},
	}
	for _, tc := range []struct{ path, source string }{
		{"/", "/dev/vda"},
		{"/var/tmp/x", "/dev/vda"},
		// The later of two mounts on /tmp is the visible one.
		{"/tmp/peapod-bench-1", "over"},
		// A prefix that is not a path component does not count.
		{"/tmpxy", "/dev/vda"},
		{"/tmpx/a", "other"},
		{"/tmp/bench work/peapod", "/dev/loop0"},
	} {
		if m := mountOf(mounts, tc.path); m == nil || m.Source != tc.source {
			t.Errorf("mountOf(%q) = %+v, want the mount of %q", tc.path, m, tc.source)
		}
	}
	if m := mountOf(nil, "/"); m != nil {
		t.Errorf("mountOf without mounts = %+v, want nil", m)
	}
}
