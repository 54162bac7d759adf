package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestRecordRoundTrip(t *testing.T) {
	ts := time.Date(2026, 11, 29, 21, 0, 0, 123456789, time.UTC)
	got := string(appendRecord(nil, ts, Stderr, true, []byte("a b c")))
	want := "2026-11-29T21:00:00.123456789Z stderr P a b c\n"
	if got != want {
		t.Fatalf("record = %q, want %q", got, want)
	}
	rec, err := parseRecord([]byte(strings.TrimSuffix(got, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !rec.time.Equal(ts) || rec.stream != Stderr || !rec.partial || string(rec.content) != "a b c" {
		t.Fatalf("parsed %+v", rec)
	}
	for _, bad := range []string{"", "nots", "2026-11-29T21:00:00Z stdin F x", "2026-11-29T21:00:00Z stdout", "yesterday stdout F x"} {
		if _, err := parseRecord([]byte(bad)); err == nil {
			t.Errorf("parseRecord(%q) succeeded", bad)
		}
	}
}

// writeAll runs a Writer over two pipes and writes out and errOut to them.
func writeAll(t *testing.T, path string, opts WriterOptions, out, errOut string) {
	t.Helper()
	or, ow := mustPipe(t)
	er, ew := mustPipe(t)
	w, err := NewWriter(path, or, er, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ow.WriteString(out); err != nil {
		t.Fatal(err)
	}
	ow.Close()
	if _, err := ew.WriteString(errOut); err != nil {
		t.Fatal(err)
	}
	ew.Close()
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
}

func mustPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// pipeEmpty reports whether the pipe of write end w holds no unread byte.
func pipeEmpty(t *testing.T, w *os.File) bool {
	t.Helper()
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatalf("FIONREAD (TIOCINQ) on a pipe: %v", ierr)
	}
	return n == 0
}

// waitFor polls cond until it holds, failing the test after a deadline
// generous enough for a busy machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// records returns "<stream> <tag> <content>" for each record of a file.
func records(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("record without newline: %q", line)
		}
		rec, err := parseRecord([]byte(strings.TrimSuffix(line, "\n")))
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		tag := "F"
		if rec.partial {
			tag = "P"
		}
		got = append(got, fmt.Sprintf("%s %s %s", rec.stream, tag, rec.content))
	}
	return got
}

func TestWriterLines(t *testing.T) {
	long := strings.Repeat("x", maxLine) + strings.Repeat("y", 10)
	tests := []struct {
		name, out, err string
		want           []string
	}{
		{"full lines", "a\nb\n", "e\n", []string{"stdout F a", "stdout F b", "stderr F e"}},
		{"empty line", "\n", "", []string{"stdout F "}},
		{"no final newline", "a\nlast", "", []string{"stdout F a", "stdout F last"}},
		{"exactly maxLine", strings.Repeat("z", maxLine) + "\n", "", []string{"stdout F " + strings.Repeat("z", maxLine)}},
		{"long line split", long + "\n", "", []string{"stdout P " + strings.Repeat("x", maxLine), "stdout F " + strings.Repeat("y", 10)}},
		{"long line at EOF", long, "", []string{"stdout P " + strings.Repeat("x", maxLine), "stdout F " + strings.Repeat("y", 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c", "0.log")
			writeAll(t, path, WriterOptions{}, tt.out, tt.err)
			got := records(t, path)
			// The streams are read concurrently: only the order within
			// each stream is defined.
			sort.SliceStable(got, func(i, j int) bool { return got[i] > got[j] && got[i][:6] != got[j][:6] })
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriterKeepsStreamsApart(t *testing.T) {
	// A line written in pieces on stdout must not be cut by stderr output
	// that arrives between the pieces.
	path := filepath.Join(t.TempDir(), "0.log")
	or, ow := mustPipe(t)
	er, ew := mustPipe(t)
	w, err := NewWriter(path, or, er, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Each piece goes in once the writer has taken the one before: "hel"
	// out of its pipe, then the stderr line into the file. Waiting on
	// those, not on the clock, keeps the order under any load.
	ow.WriteString("hel")
	waitFor(t, "the writer to read \"hel\"", func() bool { return pipeEmpty(t, ow) })
	ew.WriteString("err\n")
	waitFor(t, "the stderr line in the file", func() bool { return len(records(t, path)) == 1 })
	ow.WriteString("lo\n")
	ow.Close()
	ew.Close()
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"stderr F err", "stdout F hello"}, records(t, path)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestWriterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	var out strings.Builder
	const lines = 400
	for i := range lines {
		fmt.Fprintf(&out, "line %03d %s\n", i, strings.Repeat("-", 40))
	}
	opts := WriterOptions{MaxSize: 4 << 10, MaxFiles: 3}
	// Feed the output in small writes so that the writer sees many chunks
	// and rotates several times.
	or, ow := mustPipe(t)
	w, err := NewWriter(path, or, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	for s := out.String(); len(s) > 0; {
		n := min(len(s), 1000)
		ow.WriteString(s[:n])
		s = s[n:]
		time.Sleep(time.Millisecond)
	}
	ow.Close()
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	rotated, err := rotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != opts.MaxFiles-1 {
		t.Fatalf("rotated files = %v, want %d", rotated, opts.MaxFiles-1)
	}
	var all []string
	for _, f := range append(rotated, path) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > opts.MaxSize {
			t.Errorf("%s is %d bytes, more than MaxSize %d", f, fi.Size(), opts.MaxSize)
		}
		all = append(all, records(t, f)...)
	}
	// The kept files hold the newest lines, contiguous and in order.
	last := all[len(all)-1]
	if want := fmt.Sprintf("stdout F line %03d %s", lines-1, strings.Repeat("-", 40)); last != want {
		t.Fatalf("last record %q, want %q", last, want)
	}
	var first int
	fmt.Sscanf(all[0], "stdout F line %d", &first)
	for i, r := range all {
		if want := fmt.Sprintf("stdout F line %03d %s", first+i, strings.Repeat("-", 40)); r != want {
			t.Fatalf("record %d = %q, want %q", i, r, want)
		}
	}
}

func TestReadTailAndJoin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	long := strings.Repeat("x", maxLine+5)
	writeAll(t, path, WriterOptions{}, "one\ntwo\n"+long+"\nfour\n", "")
	tests := []struct {
		tail int
		want string
	}{
		{0, "one\ntwo\n" + long + "\nfour\n"},
		{2, long + "\nfour\n"},
		{1, "four\n"},
		{10, "one\ntwo\n" + long + "\nfour\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := Read(context.Background(), &buf, path, ReadOptions{Tail: tt.tail}); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("tail %d: got %d bytes %.40q..., want %d bytes", tt.tail, buf.Len(), buf.String(), len(tt.want))
		}
	}
}

func TestReadTimestamps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	content := "2026-11-29T21:00:00.5Z stdout P ab\n2026-11-29T21:00:01Z stdout F cd\nbroken line\n2026-11-29T21:00:02Z stderr F ef\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Read(context.Background(), &buf, path, ReadOptions{Timestamps: true}); err != nil {
		t.Fatal(err)
	}
	want := "2026-11-29T21:00:00.5Z abcd\n2026-11-29T21:00:02Z ef\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestReadFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	or, ow := mustPipe(t)
	w, err := NewWriter(path, or, nil, WriterOptions{MaxSize: 300, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- Read(ctx, &out, path, ReadOptions{Follow: true}) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	var want strings.Builder
	for i := range 40 {
		line := fmt.Sprintf("line %02d\n", i)
		want.WriteString(line)
		ow.WriteString(line)
		// Slow enough for the follower to see several rotations happen
		// while it polls.
		time.Sleep(5 * time.Millisecond)
	}
	ow.Close()
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for out.String() != want.String() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if diff := cmp.Diff(want.String(), out.String()); diff != "" {
		t.Fatalf("followed output (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Read returned %v, want context.Canceled", err)
	}
	done <- nil
}

func TestEnqueueDropsOnlyAfterBlocking(t *testing.T) {
	// No write loop runs: the queue stays full after one chunk.
	w := &Writer{queue: make(chan chunk, 1)}
	data := func() []byte { return (*bufPool.Get().(*[]byte))[:3] }
	if w.enqueue(chunk{stream: Stdout, data: data()}, false) {
		t.Fatal("dropped with room in the queue")
	}
	t0 := time.Now()
	if !w.enqueue(chunk{stream: Stdout, data: data()}, false) {
		t.Fatal("queued into a full queue")
	}
	if waited := time.Since(t0); waited < maxBlock {
		t.Fatalf("dropped after %v, want a wait of %v first", waited, maxBlock)
	}
	t0 = time.Now()
	if !w.enqueue(chunk{stream: Stdout, data: data()}, true) || time.Since(t0) > maxBlock/2 {
		t.Fatalf("a dropping stream waited %v", time.Since(t0))
	}
	<-w.queue
	if w.enqueue(chunk{stream: Stdout, data: data()}, true) {
		t.Fatal("still dropping once the queue has room")
	}
	if w.dropped != 2 {
		t.Fatalf("dropped count %d, want 2", w.dropped)
	}
}

func TestWriterCloseWithPipeHeldOpen(t *testing.T) {
	// A process outside the container may keep a write end open forever:
	// Close must still end the Writer, keeping what was read.
	path := filepath.Join(t.TempDir(), "0.log")
	or, ow := mustPipe(t)
	w, err := NewWriter(path, or, nil, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ow.WriteString("kept\n")
	deadline := time.Now().Add(30 * time.Second)
	for len(records(t, path)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close blocked while a write end is open")
	}
	if diff := cmp.Diff([]string{"stdout F kept"}, records(t, path)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestReadChunk(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	bp, n, err := readChunk(rc)
	if err != nil || bp == nil || string((*bp)[:n]) != "hello" {
		t.Fatalf("readChunk = %v, %d, %v; want hello", bp != nil, n, err)
	}
	// Waiting on an empty pipe ends with the deadline, holding nothing.
	r.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	bp, n, err = readChunk(rc)
	if !errors.Is(err, os.ErrDeadlineExceeded) || bp != nil || n != 0 {
		t.Fatalf("readChunk on an idle pipe = %v, %d, %v; want no buffer and the deadline", bp != nil, n, err)
	}
	r.SetReadDeadline(time.Time{})
	w.Close()
	bp, n, err = readChunk(rc)
	if !errors.Is(err, io.EOF) || bp != nil || n != 0 {
		t.Fatalf("readChunk at EOF = %v, %d, %v; want no buffer and EOF", bp != nil, n, err)
	}
}
