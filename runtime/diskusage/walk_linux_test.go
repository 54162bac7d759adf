package diskusage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const mib = 1 << 20

// slack is what the directories and small files of a test tree may hold
// beyond the data written: a few blocks each.
const slack = 64 << 10

func writeFile(t testing.TB, path string, size int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

func walk(t *testing.T, w *Walker, dir string) Usage {
	t.Helper()
	u, err := w.Walk(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func checkBytes(t *testing.T, what string, got Usage, data int64) {
	t.Helper()
	if got.Bytes < data || got.Bytes > data+slack {
		t.Errorf("%s: %d bytes, want %d of data plus at most %d", what, got.Bytes, data, slack)
	}
}

func TestWalkCountsAllocatedBlocks(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), mib)
	writeFile(t, filepath.Join(dir, "sub", "deeper", "b"), 2*mib)
	// A sparse file of 1 GiB holds one block.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("end"), 1<<30-3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	u := walk(t, &Walker{}, dir)
	checkBytes(t, "tree", u, 3*mib)
	// The root, sub, deeper, a, b and sparse.
	if u.Inodes != 6 || u.Truncated {
		t.Errorf("inodes %d, truncated %v; want 6, not truncated", u.Inodes, u.Truncated)
	}
}

func TestWalkHardLinksCountOnce(t *testing.T) {
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	writeFile(t, filepath.Join(one, "f"), mib)
	for _, link := range []string{filepath.Join(one, "g"), filepath.Join(two, "h")} {
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(one, "f"), link); err != nil {
			t.Fatal(err)
		}
	}
	w := &Walker{}
	checkBytes(t, "first tree", walk(t, w, one), mib)
	// The same Walker has counted the file already.
	checkBytes(t, "second tree", walk(t, w, two), 0)
	// A new one counts it in the second tree.
	checkBytes(t, "second tree, new walker", walk(t, &Walker{}, two), mib)
}

func TestWalkDoesNotFollowSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(outside, "big"), 4*mib)
	for _, link := range []string{"dir", "file"} {
		target := outside
		if link == "file" {
			target = filepath.Join(outside, "big")
		}
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	checkBytes(t, "tree of symlinks", walk(t, &Walker{}, dir), 0)
	// Nor a symlink given as the root.
	if _, err := (&Walker{}).Walk(context.Background(), filepath.Join(dir, "dir")); err == nil {
		t.Errorf("walked through a symlink given as the root")
	}
}

func TestWalkMissingDir(t *testing.T) {
	if u := walk(t, &Walker{}, filepath.Join(t.TempDir(), "none")); u != (Usage{}) {
		t.Errorf("missing dir: %+v, want nothing", u)
	}
}

func TestWalkLimits(t *testing.T) {
	dir := t.TempDir()
	for i := range 10 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), 4096)
	}
	u := walk(t, &Walker{Limits: Limits{MaxEntries: 4}}, dir)
	if !u.Truncated || u.Inodes != 5 {
		t.Errorf("MaxEntries 4: %+v, want the root and 4 files, truncated", u)
	}

	deep := t.TempDir()
	writeFile(t, filepath.Join(deep, "a", "b", "c", "hidden"), mib)
	writeFile(t, filepath.Join(deep, "seen"), mib)
	u = walk(t, &Walker{Limits: Limits{MaxDepth: 2}}, deep)
	if !u.Truncated {
		t.Errorf("MaxDepth 2: not truncated")
	}
	// c is counted but not entered; the sibling file still counts.
	checkBytes(t, "MaxDepth 2", u, mib)
}

func TestWalkStopsWithContext(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 * namesPerRead {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", i)), 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (&Walker{}).Walk(ctx, dir); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("walk with a cancelled context: %v, want canceled", err)
	}
}

// BenchmarkWalk10k measures one pass over an emptyDir of 10,000 small
// files in 100 directories, as the disk check makes it (warm cache).
func BenchmarkWalk10k(b *testing.B) {
	dir := b.TempDir()
	for d := range 100 {
		for f := range 100 {
			writeFile(b, filepath.Join(dir, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f)), 100)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		u, err := (&Walker{}).Walk(context.Background(), dir)
		if err != nil || u.Inodes != 10101 {
			b.Fatalf("walk: %+v, %v", u, err)
		}
	}
}
