package main

import "testing"

func TestMountOf(t *testing.T) {
	const mountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 30 7:0 / /tmp/bench\040work rw,relatime shared:9 - ext4 /dev/loop0 rw
32 22 0:27 / /tmpx rw - tmpfs other rw
40 30 0:30 / /tmp rw - tmpfs over rw
`
	for _, tc := range []struct{ path, fstype, source string }{
		{"/", "ext4", "/dev/vda"},
		{"/var/tmp/x", "ext4", "/dev/vda"},
		// The later of two mounts on /tmp is the visible one.
		{"/tmp/peapod-bench-1", "tmpfs", "over"},
		// A prefix that is not a path component does not count.
		{"/tmpxy", "ext4", "/dev/vda"},
		{"/tmpx/a", "tmpfs", "other"},
		{"/tmp/bench work/peapod", "ext4", "/dev/loop0"},
	} {
		fstype, source, ok := mountOf(mountinfo, tc.path)
		if !ok || fstype != tc.fstype || source != tc.source {
			t.Errorf("mountOf(%q) = %q, %q, %v; want %q, %q", tc.path, fstype, source, ok, tc.fstype, tc.source)
		}
	}
	if _, _, ok := mountOf("garbage\n", "/"); ok {
		t.Error("mountOf found a mount in a mountinfo without one")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/plain`:         "/plain",
		`/a\040b`:        "/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/short\04`:      `/short\04`,
		`/not\999octal`:  `/not\999octal`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
