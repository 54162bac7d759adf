package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnpackHostile feeds the unpacker layers that try to write outside
// their directory or to bring host-level objects in, and checks that each
// fails (or drops the entry) and that nothing outside changed.
func TestUnpackHostile(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		entries func(outside string) []entry
		wantErr string // "" means the layer unpacks, minus the hostile part
		check   func(t *testing.T, layer, outside string)
	}{
		{
			name:    "dot-dot traversal",
			entries: func(string) []entry { return []entry{fileE("../outside/evil", "x")} },
			wantErr: "leaves the layer",
		},
		{
			name:    "dot-dot inside a name",
			entries: func(string) []entry { return []entry{fileE("a/../../outside/evil", "x")} },
			wantErr: "leaves the layer",
		},
		{
			name:    "absolute name lands inside",
			entries: func(outside string) []entry { return []entry{fileE(outside+"/evil", "x")} },
			check: func(t *testing.T, layer, outside string) {
				if _, err := os.Stat(filepath.Join(layer, outside, "evil")); err != nil {
					t.Errorf("absolute name not unpacked inside the layer: %v", err)
				}
			},
		},
		{
			name: "symlink then write through it",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside), fileE("lnk/evil", "x")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name: "relative symlink then write through it",
			entries: func(string) []entry {
				return []entry{symlinkE("lnk", "../outside"), fileE("lnk/evil", "x")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name: "symlink then mkdir through it",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside), dirE("lnk/evil/")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name:    "absolute hard link",
			entries: func(outside string) []entry { return []entry{hardlinkE("hl", outside+"/secret")} },
			wantErr: "no such file",
		},
		{
			name:    "hard link traversal",
			entries: func(string) []entry { return []entry{hardlinkE("hl", "../outside/secret")} },
			wantErr: "leaves the layer",
		},
		{
			name: "hard link through a symlink",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside), hardlinkE("hl", "lnk/secret")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name: "hard link to a symlink links the symlink",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside+"/secret"), hardlinkE("hl", "lnk")}
			},
			check: func(t *testing.T, layer, outside string) {
				if fi, err := os.Lstat(filepath.Join(layer, "hl")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("hl = %v, %v; want a symlink", fi, err)
				}
			},
		},
		{
			name: "whiteout through a symlink",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside), fileE("lnk/.wh.secret", "")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name: "opaque marker through a symlink",
			entries: func(outside string) []entry {
				return []entry{symlinkE("lnk", outside), fileE("lnk/.wh..wh..opq", "")}
			},
			wantErr: "openat2 lnk",
		},
		{
			name: "device nodes are skipped",
			entries: func(string) []entry {
				return []entry{
					{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
					{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Mode: 0o660, Devmajor: 8}},
					{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "fake-whiteout", Mode: 0o600}},
				}
			},
			check: func(t *testing.T, layer, _ string) {
				for _, n := range []string{"null", "sda", "fake-whiteout"} {
					if _, err := os.Lstat(filepath.Join(layer, n)); !os.IsNotExist(err) {
						t.Errorf("device node %s was made (%v)", n, err)
					}
				}
			},
		},
		{
			name: "host-level xattrs are dropped, setuid kept",
			entries: func(string) []entry {
				e := fileE("suid", "x")
				e.hdr.Mode = 0o4755
				e.hdr.PAXRecords = map[string]string{
					"SCHILY.xattr.trusted.overlay.opaque": "y",
					"SCHILY.xattr.security.evil":          "x",
					"SCHILY.xattr.user.note":              "kept",
				}
				return []entry{e}
			},
			check: func(t *testing.T, layer, _ string) {
				p := filepath.Join(layer, "suid")
				fi, err := os.Stat(p)
				if err != nil || fi.Mode()&os.ModeSetuid == 0 {
					t.Errorf("suid = %v, %v; want a setuid file", fi, err)
				}
				buf := make([]byte, 64)
				for _, x := range []string{"trusted.overlay.opaque", "security.evil"} {
					if _, err := unix.Lgetxattr(p, x, buf); err == nil {
						t.Errorf("xattr %s was set", x)
					}
				}
				if n, err := unix.Lgetxattr(p, "user.note", buf); err != nil && err != unix.ENOTSUP || err == nil && string(buf[:n]) != "kept" {
					t.Errorf("xattr user.note = %q, %v", buf[:max(n, 0)], err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			layer, outside := filepath.Join(base, "layer"), filepath.Join(base, "outside")
			for _, d := range []string{layer, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			secret := filepath.Join(outside, "secret")
			if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := unpackLayer(bytes.NewReader(tarOf(t, tc.entries(outside)...)), layer)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unpack: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("unpack error = %v, want one containing %q", err, tc.wantErr)
			}
			assertUntouched(t, outside, secret)
			if tc.check != nil {
				tc.check(t, layer, outside)
			}
		})
	}
}

// TestUnpackHugeHeader checks that a PAX header larger than archive/tar's
// 1 MiB bound fails the layer instead of being held in memory.
func TestUnpackHugeHeader(t *testing.T) {
	requireRoot(t)
	rec := "SCHILY.xattr.user.big=" + strings.Repeat("x", 2<<20) + "\n"
	rec = fmt.Sprintf("%d %s", len(rec)+8, rec) // 8: the length's own digits and space
	// tar.Writer refuses such a header, so write it as a regular file and
	// turn its header block into a PAX one.
	b := tarOf(t, entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "pax", Size: int64(len(rec)), Mode: 0o644}, body: rec}, fileE("f", "x"))
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	var sum int
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	_, err := unpackLayer(bytes.NewReader(b), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "read layer tar") {
		t.Fatalf("unpack error = %v, want a tar read error", err)
	}
}

// assertUntouched checks that outside holds only secret, unlinked,
// unchanged and without xattrs.
func assertUntouched(t *testing.T, outside, secret string) {
	t.Helper()
	ents, err := os.ReadDir(outside)
	if err != nil || len(ents) != 1 {
		t.Errorf("outside directory holds %v (%v); want only secret", ents, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(secret, &st); err != nil || st.Nlink != 1 {
		t.Errorf("secret: nlink %d, %v; want 1 (no hard link to it)", st.Nlink, err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "s" {
		t.Errorf("secret now holds %q", b)
	}
	if n, _ := unix.Llistxattr(outside, make([]byte, 256)); n > 0 {
		t.Errorf("outside directory got xattrs")
	}
}

// TestUnpackOverlayFormat unpacks the two test layers and mounts them as
// overlay lowers, as the runtime will: the whiteout hides data/a, the
// opaque directory hides opq/old, and the hard link and symlink survive.
func TestUnpackOverlayFormat(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	var dirs []string
	for i, l := range busyboxLayers(t) {
		d := filepath.Join(base, "layer"+string(rune('0'+i)))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := unpackLayer(bytes.NewReader(l), d); err != nil {
			t.Fatalf("unpack layer %d: %v", i, err)
		}
		dirs = append(dirs, d)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dirs[1], "data/a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout data/a: mode %o rdev %d, %v; want a 0/0 character device", st.Mode, st.Rdev, err)
	}
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// Only lower layers: overlay mounts read-only. Top layer first.
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+dirs[1]+":"+dirs[0]); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	for p, want := range map[string]bool{"data/a": false, "data/b": true, "opq/old": false, "opq/new": true, "bin/busybox": true} {
		_, err := os.Lstat(filepath.Join(mnt, p))
		if got := err == nil; got != want {
			t.Errorf("%s visible = %v (%v), want %v", p, got, err, want)
		}
	}
	bb, err1 := os.Stat(filepath.Join(mnt, "bin/busybox"))
	hl, err2 := os.Stat(filepath.Join(mnt, "bin/hl"))
	if err1 != nil || err2 != nil || !os.SameFile(bb, hl) {
		t.Errorf("bin/hl is not a hard link of bin/busybox: %v %v", err1, err2)
	}
	if target, err := os.Readlink(filepath.Join(mnt, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}
}
