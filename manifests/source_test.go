package manifests

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/go-cmp/cmp"
)

// podYAML returns a minimal valid manifest for pod default/name.
func podYAML(name, image string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: default}\n"+
		"spec: {containers: [{name: c, image: %q}]}\n", name, image)
}

// writeFile writes path atomically (a hidden temporary file renamed into
// place, as careful tools do) with mode 0644 whatever the umask.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// summary renders a snapshot for comparison: each pod as
// "key file image[ held]", each error as its file's base name.
type summary struct {
	Pods   []string
	Errors []string
}

func summarize(s Snapshot) summary {
	var sum summary
	for _, p := range s.Pods {
		line := fmt.Sprintf("%s %s %s", p.Key(), filepath.Base(p.File), p.Pod.Spec.Containers[0].Image)
		if p.Held {
			line += " held"
		}
		sum.Pods = append(sum.Pods, line)
	}
	for _, e := range s.Errors {
		sum.Errors = append(sum.Errors, filepath.Base(e.File))
	}
	return sum
}

func checkSummary(t *testing.T, s Snapshot, want summary) {
	t.Helper()
	if diff := cmp.Diff(want, summarize(s)); diff != "" {
		t.Fatalf("snapshot mismatch (-want +got):\n%s\nerrors: %v", diff, s.Errors)
	}
}

// watched runs a Source on dir for the duration of the test.
type watched struct {
	t       *testing.T
	updates chan Snapshot
}

// watch runs a Source on dir until the test ends. With a resync longer
// than the test, every change after the first update must come through the
// watcher; while dir is missing, it is polled every second.
func watch(t *testing.T, dir string) *watched {
	return watchDebounced(t, dir, 10*time.Millisecond)
}

// watchDebounced is watch with the given debounce.
func watchDebounced(t *testing.T, dir string, debounce time.Duration) *watched {
	ctx := t.Context()
	w := &watched{t: t, updates: make(chan Snapshot)}
	src := NewSource(SourceOptions{
		Dir:      dir,
		Resync:   time.Hour,
		Debounce: debounce,
		Log:      slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(s Snapshot) {
			select {
			case w.updates <- s:
			case <-ctx.Done():
			}
		})
	}()
	// t.Context is cancelled before the cleanups run.
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// next returns the next update. The tests rely on it to prove that nothing
// was emitted in between: the update after a change is that change.
func (w *watched) next() Snapshot {
	w.t.Helper()
	select {
	case s := <-w.updates:
		return s
	case <-time.After(5 * time.Second):
		w.t.Fatal("no update within 5s")
		return Snapshot{}
	}
}

// waitFor returns the first update that satisfies ok, for changes made in
// several steps that a rescan may observe half-way.
func (w *watched) waitFor(ok func(summary) bool) Snapshot {
	w.t.Helper()
	for {
		if s := w.next(); ok(summarize(s)) {
			return s
		}
	}
}

func TestSourceInitialScan(t *testing.T) {
	for _, files := range [][]string{nil, {"a", "b"}} {
		dir := t.TempDir()
		var want summary
		for _, name := range files {
			writeFile(t, filepath.Join(dir, name+".yaml"), podYAML(name, "rootfs:/x"))
			want.Pods = append(want.Pods, "default/"+name+" "+name+".yaml rootfs:/x")
		}
		checkSummary(t, watch(t, dir).next(), want)
	}
}

func TestSourceAddEditDelete(t *testing.T) {
	dir := t.TempDir()
	w := watch(t, dir)
	checkSummary(t, w.next(), summary{})

	path := filepath.Join(dir, "web.yaml")
	writeFile(t, path, podYAML("web", "rootfs:/v1"))
	v1 := w.next()
	checkSummary(t, v1, summary{Pods: []string{"default/web web.yaml rootfs:/v1"}})

	writeFile(t, path, podYAML("web", "rootfs:/v2"))
	v2 := w.next()
	checkSummary(t, v2, summary{Pods: []string{"default/web web.yaml rootfs:/v2"}})
	if v1.Pods[0].UID() == v2.Pods[0].UID() {
		t.Errorf("edit kept UID %q", v1.Pods[0].UID())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, w.next(), summary{})
}

// TestSourceAtomicWriteSeenOnce also checks that editor files, dot-files
// and subdirectories neither count as manifests nor cause an update.
func TestSourceAtomicWriteSeenOnce(t *testing.T) {
	dir := t.TempDir()
	w := watch(t, dir)
	checkSummary(t, w.next(), summary{})

	tmp := filepath.Join(dir, "web.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(podYAML("web", "rootfs:/x")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, w.next(), summary{Pods: []string{"default/web web.yaml rootfs:/x"}})

	for _, name := range []string{".web.yaml.swp", ".web.yaml.swx", "web.yaml~", "web.yaml.bak",
		"web.yaml.tmp", "#web.yaml#", "4913", ".hidden.yaml", "notes.txt"} {
		writeFile(t, filepath.Join(dir, name), podYAML("ignored", "rootfs:/x"))
	}
	for _, sub := range []string{"sub", "sub.yaml"} {
		mkdir(t, filepath.Join(dir, sub), 0o755)
		writeFile(t, filepath.Join(dir, sub, "x.yaml"), podYAML("ignored", "rootfs:/x"))
	}
	writeFile(t, filepath.Join(dir, "b.yml"), podYAML("b", "rootfs:/x"))
	checkSummary(t, w.next(), summary{Pods: []string{"default/b b.yml rootfs:/x", "default/web web.yaml rootfs:/x"}})
}

// TestSourceDataSymlinkSwap updates a directory laid out by Kubernetes'
// atomic writer (ConfigMap volumes): web.yaml -> ..data/web.yaml, with
// ..data swapped by renaming a new symlink over it.
func TestSourceDataSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, "..2026_11_29_a"), 0o755)
	writeFile(t, filepath.Join(dir, "..2026_11_29_a", "web.yaml"), podYAML("web", "rootfs:/a"))
	symlink(t, "..2026_11_29_a", filepath.Join(dir, "..data"))
	symlink(t, "..data/web.yaml", filepath.Join(dir, "web.yaml"))
	w := watch(t, dir)
	checkSummary(t, w.next(), summary{Pods: []string{"default/web web.yaml rootfs:/a"}})

	mkdir(t, filepath.Join(dir, "..2026_11_29_b"), 0o755)
	writeFile(t, filepath.Join(dir, "..2026_11_29_b", "web.yaml"), podYAML("web", "rootfs:/b"))
	symlink(t, "..2026_11_29_b", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, w.next(), summary{Pods: []string{"default/web web.yaml rootfs:/b"}})
}

func TestSourceDirRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	mkdir(t, dir, 0o755)
	writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/x"))
	w := watch(t, dir)
	checkSummary(t, w.next(), summary{Pods: []string{"default/web web.yaml rootfs:/x"}})

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	gone := w.waitFor(func(s summary) bool { return len(s.Errors) > 0 })
	checkSummary(t, gone, summary{Errors: []string{"pods"}})
	if !errors.Is(gone.Errors[0].Err, fs.ErrNotExist) {
		t.Errorf("error for the missing directory = %v, want ErrNotExist", gone.Errors[0].Err)
	}

	mkdir(t, dir, 0o755)
	writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/y"))
	w.waitFor(func(s summary) bool { return len(s.Pods) == 1 })
	// The watch is back: with no resync due, only an event can show this.
	writeFile(t, filepath.Join(dir, "b.yaml"), podYAML("b", "rootfs:/x"))
	w.waitFor(func(s summary) bool { return len(s.Pods) == 2 })
}

func TestSourceMissingDirAtStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pods")
	w := watch(t, dir)
	checkSummary(t, w.next(), summary{Errors: []string{"pods"}})

	mkdir(t, dir, 0o755)
	writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/x"))
	w.waitFor(func(s summary) bool { return len(s.Pods) == 1 && len(s.Errors) == 0 })
}

// TestRescanUnchanged checks that a rescan finding the same state neither
// calls update nor logs the same error again.
func TestRescanUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.yaml"), "garbage: [")
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	var logs bytes.Buffer
	src := NewSource(SourceOptions{Dir: dir, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	updates := 0
	r := &runner{Source: src, w: watcher, sc: newScanner(dir, Policy{}), update: func(Snapshot) { updates++ }}
	for range 3 {
		r.rescan()
	}
	if updates != 1 {
		t.Errorf("%d updates, want 1", updates)
	}
	if n := strings.Count(logs.String(), "manifest rejected"); n != 1 {
		t.Errorf("error logged %d times, want 1:\n%s", n, logs.String())
	}
}

// TestWarningsLoggedOnce checks that the warnings of a manifest reach the
// agent's log when the pod is read, and not again at each rescan.
func TestWarningsLoggedOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\n"+
		"spec:\n  volumes: [{name: etc, hostPath: {path: /etc}}]\n"+
		"  containers: [{name: c, image: rootfs:/x, volumeMounts: [{name: etc, mountPath: /etc-host}]}]\n")
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	var logs bytes.Buffer
	src := NewSource(SourceOptions{Dir: dir, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	r := &runner{Source: src, w: watcher, sc: newScanner(dir, Policy{}), update: func(Snapshot) {}}
	for range 3 {
		r.rescan()
	}
	want := "mounts host directory /etc writable"
	if n := strings.Count(logs.String(), want); n != 1 {
		t.Errorf("warning %q logged %d times, want 1:\n%s", want, n, logs.String())
	}
}

func TestScanHoldsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yaml")
	sc := newScanner(dir, Policy{})
	steps := []struct {
		name    string
		content string // "" removes the file
		want    summary
	}{
		{"good", podYAML("web", "rootfs:/v1"), summary{Pods: []string{"default/web web.yaml rootfs:/v1"}}},
		{"broken", "garbage: [", summary{Pods: []string{"default/web web.yaml rootfs:/v1 held"}, Errors: []string{"web.yaml"}}},
		{"fixed", podYAML("web", "rootfs:/v2"), summary{Pods: []string{"default/web web.yaml rootfs:/v2"}}},
		{"broken again", "kind: [", summary{Pods: []string{"default/web web.yaml rootfs:/v2 held"}, Errors: []string{"web.yaml"}}},
		{"removed", "", summary{}},
	}
	for _, step := range steps {
		if step.content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, path, step.content)
		}
		snap := sc.scan()
		if diff := cmp.Diff(step.want, summarize(snap)); diff != "" {
			t.Fatalf("%s: snapshot mismatch (-want +got):\n%s", step.name, diff)
		}
		if st := sc.files["web.yaml"]; st != nil && len(st.good) > 0 && st.good[0].Held {
			t.Fatalf("%s: the shared last good pod was marked held", step.name)
		}
	}
}

func TestLoadDuplicatesFirstFileWins(t *testing.T) {
	dir := t.TempDir()
	// Written in reverse order: the winner must not depend on it.
	writeFile(t, filepath.Join(dir, "b.yaml"), podYAML("web", "rootfs:/b"))
	writeFile(t, filepath.Join(dir, "a.yaml"), podYAML("web", "rootfs:/a"))
	checkSummary(t, Load(dir), summary{Pods: []string{"default/web a.yaml rootfs:/a"}, Errors: []string{"b.yaml"}})
}

func TestLoadFollowsSymlinks(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(elsewhere, "real.yaml"), podYAML("web", "rootfs:/x"))
	symlink(t, filepath.Join(elsewhere, "real.yaml"), filepath.Join(dir, "web.yaml"))
	checkSummary(t, Load(dir), summary{Pods: []string{"default/web web.yaml rootfs:/x"}})
}

func TestLoadRefusesWritableByOthers(t *testing.T) {
	t.Run("group-writable file", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.yaml"), podYAML("a", "rootfs:/x"))
		writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/x"))
		if err := os.Chmod(filepath.Join(dir, "web.yaml"), 0o664); err != nil {
			t.Fatal(err)
		}
		snap := Load(dir)
		checkSummary(t, snap, summary{Pods: []string{"default/a a.yaml rootfs:/x"}, Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+filepath.Join(dir, "web.yaml"))
	})
	t.Run("file owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("giving a file away takes root")
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "web.yaml")
		writeFile(t, path, podYAML("web", "rootfs:/x"))
		if err := os.Chown(path, 12345, 0); err != nil {
			t.Fatal(err)
		}
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chown root "+path)
	})
	t.Run("world-writable directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pods")
		mkdir(t, dir, 0o777)
		writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/x"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+dir)
	})
	t.Run("symlink into a world-writable directory", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		writeFile(t, filepath.Join(elsewhere, "real.yaml"), podYAML("web", "rootfs:/x"))
		if err := os.Chmod(elsewhere, 0o777); err != nil {
			t.Fatal(err)
		}
		symlink(t, filepath.Join(elsewhere, "real.yaml"), filepath.Join(dir, "web.yaml"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+elsewhere)
	})
}

func checkUnsafe(t *testing.T, err error, fix string) {
	t.Helper()
	var unsafe *unsafeError
	if !errors.As(err, &unsafe) {
		t.Fatalf("error %v is not an unsafeError", err)
	}
	if !strings.HasSuffix(err.Error(), fix) {
		t.Errorf("error %q does not end with the fix %q", err, fix)
	}
}

// TestLoadBadFiles checks that each bad file yields its own error, that the
// good pod carries on, and that no special file is opened (a FIFO would
// block the open, /dev/zero the read).
func TestLoadBadFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.yaml"), podYAML("good", "rootfs:/x"))
	writeFile(t, filepath.Join(dir, "garbage.yaml"), "\x00\x01 not yaml: [")
	writeFile(t, filepath.Join(dir, "huge.yaml"), podYAML("huge", "rootfs:/x")+strings.Repeat("#", MaxFileSize))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo-target"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "fifo-target", filepath.Join(dir, "fifo.yaml"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo2.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, "/dev/zero", filepath.Join(dir, "zero.yaml"))
	symlink(t, "/nonexistent", filepath.Join(dir, "dangling.yaml"))
	mkdir(t, filepath.Join(dir, "subdir"), 0o755)
	symlink(t, "subdir", filepath.Join(dir, "dir.yaml"))

	loaded := make(chan Snapshot, 1)
	go func() { loaded <- Load(dir) }()
	select {
	case snap := <-loaded:
		checkSummary(t, snap, summary{
			Pods: []string{"default/good good.yaml rootfs:/x"},
			Errors: []string{"dangling.yaml", "dir.yaml", "fifo.yaml", "fifo2.yaml",
				"garbage.yaml", "huge.yaml", "zero.yaml"},
		})
	case <-time.After(5 * time.Second):
		t.Fatal("Load blocked on a special file")
	}
}

func TestDebouncer(t *testing.T) {
	const ms = time.Millisecond
	start := time.Now()
	tests := []struct {
		name   string
		events []time.Duration // since start
		want   time.Duration   // delay returned for the last event
	}{
		{"single event waits for quiet", []time.Duration{0}, 20 * ms},
		{"burst extends the wait", []time.Duration{0, 5 * ms, 10 * ms}, 20 * ms},
		{"stream is bounded", []time.Duration{0, 50 * ms, 100 * ms, 190 * ms}, 10 * ms},
		{"past the bound flushes at once", []time.Duration{0, 250 * ms}, 0},
	}
	for _, tt := range tests {
		d := debouncer{quiet: 20 * ms, max: 200 * ms}
		var got time.Duration
		for _, at := range tt.events {
			got = d.add(start.Add(at), false)
		}
		if got != tt.want {
			t.Errorf("%s: delay %v, want %v", tt.name, got, tt.want)
		}
	}
	d := debouncer{quiet: 20 * ms, max: 200 * ms}
	d.add(start, false)
	d.flushed(start.Add(20 * ms))
	if got := d.add(start.Add(time.Second), false); got != 20*ms {
		t.Errorf("after a flush: delay %v, want %v", got, 20*ms)
	}
}

func TestDebouncerLeadingEdge(t *testing.T) {
	const ms = time.Millisecond
	start := time.Now()
	d := debouncer{quiet: 20 * ms, max: 200 * ms}
	if got := d.add(start, true); got != 0 {
		t.Errorf("complete change after quiet: delay %v, want 0", got)
	}
	d.flushed(start.Add(ms))
	// The rest of a burst waits, whether or not it is complete.
	if got := d.add(start.Add(5*ms), true); got != 20*ms {
		t.Errorf("complete change within quiet of a flush: delay %v, want %v", got, 20*ms)
	}
	d.flushed(start.Add(25 * ms))
	if got := d.add(start.Add(time.Second), false); got != 20*ms {
		t.Errorf("incomplete change after quiet: delay %v, want %v", got, 20*ms)
	}
}

// A manifest renamed into the directory is whole when it appears: it is
// scanned at once, long before a debounce would end.
func TestSourceRenameSkipsDebounce(t *testing.T) {
	dir := t.TempDir()
	w := watchDebounced(t, dir, time.Hour)
	checkSummary(t, w.next(), summary{})
	tmp := filepath.Join(t.TempDir(), "web.yaml")
	writeFile(t, tmp, podYAML("web", "rootfs:/v1"))
	if err := os.Rename(tmp, filepath.Join(dir, "web.yaml")); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, w.next(), summary{Pods: []string{"default/web web.yaml rootfs:/v1"}})
}

// A manifest some process still holds open for writing may be half
// written: it waits for the debounce, however long the writer keeps it.
func TestSourceWaitsForWriter(t *testing.T) {
	const debounce = 300 * time.Millisecond
	dir := t.TempDir()
	w := watchDebounced(t, dir, debounce)
	checkSummary(t, w.next(), summary{})
	f, err := os.Create(filepath.Join(dir, "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := f.WriteString(podYAML("web", "rootfs:/v1")); err != nil {
		t.Fatal(err)
	}
	s := w.next()
	// Load can only make the update later, never earlier.
	if waited := time.Since(start); waited < debounce*9/10 {
		t.Errorf("file open for writing was scanned after %v, before the %v debounce", waited, debounce)
	}
	checkSummary(t, s, summary{Pods: []string{"default/web web.yaml rootfs:/v1"}})
}

func TestOpenForWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yaml")
	writeFile(t, path, "x")
	if openForWriting(path) {
		t.Error("closed file reported open for writing")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !openForWriting(path) {
		t.Error("file open for writing not reported")
	}
	f.Close()
	if openForWriting(path) {
		t.Error("file reported open for writing after close")
	}
	if openForWriting(filepath.Join(t.TempDir(), "gone.yaml")) {
		t.Error("missing file reported open for writing")
	}
	if !openForWriting(t.TempDir()) {
		t.Error("directory not reported as unknown")
	}
}

// BenchmarkRescanUnchanged measures a rescan of 200 manifests that did not
// change, the cost of every resync and of every event on another file.
func BenchmarkRescanUnchanged(b *testing.B) {
	dir := b.TempDir()
	for i := range 200 {
		name := fmt.Sprintf("pod%03d", i)
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(podYAML(name, "rootfs:/x")), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	sc := newScanner(dir, Policy{})
	if snap := sc.scan(); len(snap.Pods) != 200 {
		b.Fatalf("%d pods, want 200: %v", len(snap.Pods), snap.Errors)
	}
	for b.Loop() {
		sc.scan()
	}
}

// TestRefusedDirectoryHoldsPods makes the directory writable by others, as
// an operator's chmod slip would: the pods read from it are held, not
// dropped, and the error names the directory; fixing the mode brings the
// same pods back unheld.
func TestRefusedDirectoryHoldsPods(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web.yaml"), podYAML("web", "rootfs:/x"))
	sc := newScanner(dir, Policy{})
	before := sc.scan()
	if len(before.Pods) != 1 || len(before.Errors) != 0 {
		t.Fatalf("first scan: %d pods, errors %v", len(before.Pods), before.Errors)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	snap := sc.scan()
	if len(snap.Errors) != 1 || snap.Errors[0].File != dir || snap.RefusedDir != dir {
		t.Fatalf("refused directory: errors %v, refusedDir %q; want one error naming %s", snap.Errors, snap.RefusedDir, dir)
	}
	if len(snap.Pods) != 1 || !snap.Pods[0].Held || snap.Pods[0].UID() != before.Pods[0].UID() {
		t.Fatalf("refused directory: pods %+v, want web held", snap.Pods)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	after := sc.scan()
	if len(after.Pods) != 1 || after.Pods[0].Held || after.RefusedDir != "" || len(after.Errors) != 0 {
		t.Errorf("after the fix: %+v", after)
	}
}
