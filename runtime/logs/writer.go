package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults for WriterOptions, kubelet's containerLogMaxSize and
// containerLogMaxFiles.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 5
)

const (
	// maxLine is the longest line written as one record; longer lines are
	// split into P records, as containerd does.
	maxLine = 16 << 10
	// readSize is the size of one read from a pipe.
	readSize = 32 << 10
	// queueLen bounds the reads waiting for the disk (queueLen*readSize
	// bytes at most).
	queueLen = 64
	// maxBlock is how long a full queue may hold up a pipe (and so the
	// container writing to it) before output is dropped.
	maxBlock = time.Second
	// rotatedSuffix is the timestamp layout kubelet's container log manager
	// appends to rotated files.
	rotatedSuffix = "20060102-150405"
)

// WriterOptions bounds the disk a container's log may use.
// The zero value means DefaultMaxSize and DefaultMaxFiles.
type WriterOptions struct {
	// MaxSize is the size in bytes at which the file is rotated.
	MaxSize int64
	// MaxFiles is how many files to keep, the live one included (at least 2).
	MaxFiles int
	// Log receives write errors and drop notices; nil discards them.
	Log *slog.Logger
}

// Writer drains a container's stdout and stderr into one CRI log file,
// rotating it by size. When the disk falls behind, up to queueLen reads
// wait in memory, then the container waits on its full pipe, as with
// containerd; after maxBlock of that, output is dropped (and counted in a
// stderr record) until the disk catches up, so a stuck disk never stalls
// the container for long.
//
// Once NewWriter succeeds, the Writer owns the pipes it was given and
// closes them. Its goroutines stop when both pipes reach EOF, or at Close.
type Writer struct {
	path  string
	opts  WriterOptions
	log   *slog.Logger
	pipes []*os.File
	queue chan chunk
	done  chan struct{}

	mu      sync.Mutex
	dropped int
	err     error
}

// chunk is one read from one stream; a nil data marks its EOF.
type chunk struct {
	stream Stream
	time   time.Time
	data   []byte
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

// NewWriter opens (appending to) the log file at path, creating its
// directory, and starts draining stdout and stderr, the read ends of the
// container's pipes. Either may be nil.
func NewWriter(path string, stdout, stderr *os.File, opts WriterOptions) (*Writer, error) {
	if opts.MaxSize <= 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxFiles < 2 {
		opts.MaxFiles = DefaultMaxFiles
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	w := &Writer{path: path, opts: opts, log: log, queue: make(chan chunk, queueLen), done: make(chan struct{})}
	var readers sync.WaitGroup
	for _, p := range []struct {
		f *os.File
		s Stream
	}{{stdout, Stdout}, {stderr, Stderr}} {
		if p.f == nil {
			continue
		}
		w.pipes = append(w.pipes, p.f)
		readers.Go(func() { w.read(p.f, p.s) })
	}
	// The queue closes once every reader has queued its EOF, which ends
	// the write loop.
	go func() { readers.Wait(); close(w.queue) }()
	go w.writeLoop(f)
	return w, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return f, nil
}

// Wait blocks until both streams reached EOF and everything read has been
// written, then returns the first write error.
func (w *Writer) Wait() error {
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops reading (output still in the pipes is lost), writes what was
// read and returns as Wait. A process outside the container that still holds
// a pipe's write end would otherwise keep the Writer alive.
func (w *Writer) Close() error {
	for _, p := range w.pipes {
		// A deadline in the past wakes a blocked Read with an error, which
		// the reader treats as EOF; closing the file would race with it.
		_ = p.SetReadDeadline(time.Unix(1, 0))
	}
	return w.Wait()
}

// read queues every read from f until EOF or error, then queues the EOF.
func (w *Writer) read(f *os.File, s Stream) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		w.log.Warn("read container output", "stream", s, "err", err)
		w.queue <- chunk{stream: s}
		return
	}
	dropping := false
	for {
		bp, n, err := readChunk(rc)
		if n > 0 {
			dropping = w.enqueue(chunk{stream: s, time: time.Now(), data: (*bp)[:n]}, dropping)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				w.log.Warn("read container output", "stream", s, "err", err)
			}
			w.queue <- chunk{stream: s}
			return
		}
	}
}

// readChunk reads once from rc into a buffer from bufPool, which it takes
// only once the pipe is readable: a quiet container's pipes, most of them,
// hold no buffer while they wait. It returns io.EOF at the end, and the
// file's error (a read deadline, closed) as is.
func readChunk(rc syscall.RawConn) (bp *[]byte, n int, err error) {
	werr := rc.Read(func(fd uintptr) bool {
		bp = bufPool.Get().(*[]byte)
		n, err = unix.Read(int(fd), *bp)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			bufPool.Put(bp)
			bp, n, err = nil, 0, nil
			return false
		}
		return true
	})
	switch {
	case werr != nil:
		err = werr
	case err == nil && n == 0:
		err = io.EOF
	}
	if n < 0 {
		n = 0
	}
	if n == 0 && bp != nil {
		bufPool.Put(bp)
		bp = nil
	}
	return bp, n, err
}

// enqueue queues c, waiting up to maxBlock for room unless the stream is
// already dropping. It returns whether the stream is dropping now.
func (w *Writer) enqueue(c chunk, dropping bool) bool {
	select {
	case w.queue <- c:
		return false
	default:
	}
	if !dropping {
		t := time.NewTimer(maxBlock)
		defer t.Stop()
		select {
		case w.queue <- c:
			return false
		case <-t.C:
		}
	}
	w.mu.Lock()
	w.dropped += bytes.Count(c.data, []byte{'\n'}) + 1
	w.mu.Unlock()
	b := c.data[:cap(c.data)]
	bufPool.Put(&b)
	return true
}

// writeLoop turns chunks into records and writes them, one write per
// chunk. It keeps one partial line per stream so that the two streams
// interleave only at line boundaries.
func (w *Writer) writeLoop(f *os.File) {
	defer close(w.done)
	fw := &fileWriter{path: w.path, opts: w.opts, f: f, size: fileSize(f)}
	pending := map[Stream][]byte{}
	var rec []byte
	for c := range w.queue {
		rec = w.format(rec[:0], c, pending)
		w.noteDropped(&rec, c.time)
		if err := fw.write(rec); err != nil {
			w.setErr(err)
		}
		if b := c.data; b != nil {
			b = b[:cap(b)]
			bufPool.Put(&b)
		}
	}
	if err := fw.f.Close(); err != nil {
		w.setErr(fmt.Errorf("close container log: %w", err))
	}
}

// format appends the records for one chunk to rec. Complete lines become F
// records; a line that reaches maxLine without a newline is cut into a P
// record; what remains waits in pending for the next chunk or EOF.
func (w *Writer) format(rec []byte, c chunk, pending map[Stream][]byte) []byte {
	line := pending[c.stream]
	if c.data == nil {
		// EOF: a last line without a newline is as complete as it will get.
		if len(line) > 0 {
			rec = appendRecord(rec, c.time, c.stream, false, line)
		}
		delete(pending, c.stream)
		return rec
	}
	data := c.data
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			room := maxLine - len(line)
			if len(data) < room {
				line = append(line, data...)
				break
			}
			line = append(line, data[:room]...)
			rec = appendRecord(rec, c.time, c.stream, true, line)
			line, data = line[:0], data[room:]
			continue
		}
		line = append(line, data[:i]...)
		for len(line) > maxLine {
			rec = appendRecord(rec, c.time, c.stream, true, line[:maxLine])
			line = append(line[:0], line[maxLine:]...)
		}
		rec = appendRecord(rec, c.time, c.stream, false, line)
		line, data = line[:0], data[i+1:]
	}
	pending[c.stream] = line
	return rec
}

// noteDropped appends a stderr record counting the lines dropped since the
// last note, so a reader knows the log has a gap.
func (w *Writer) noteDropped(rec *[]byte, t time.Time) {
	w.mu.Lock()
	n := w.dropped
	w.dropped = 0
	w.mu.Unlock()
	if n == 0 {
		return
	}
	w.log.Warn("container log dropped output", "file", w.path, "lines", n)
	msg := fmt.Sprintf("peapod: dropped about %d lines of output: the log disk is too slow", n)
	*rec = appendRecord(*rec, t, Stderr, false, []byte(msg))
}

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
		w.log.Error("write container log", "file", w.path, "err", err)
	}
}

func fileSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// fileWriter writes whole batches of records, rotating the file before a
// batch that would take it past MaxSize, so no record is ever split
// across two files.
type fileWriter struct {
	path string
	opts WriterOptions
	f    *os.File
	size int64
}

func (fw *fileWriter) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if fw.size > 0 && fw.size+int64(len(p)) > fw.opts.MaxSize {
		if err := fw.rotate(); err != nil {
			return err
		}
	}
	n, err := fw.f.Write(p)
	fw.size += int64(n)
	if err != nil {
		return fmt.Errorf("write container log: %w", err)
	}
	return nil
}

// rotate renames the live file to <path>.<timestamp>, opens a new one and
// removes the oldest rotated files beyond MaxFiles. The open file is renamed
// before it is closed, so a failed rotation leaves it in place to write to.
func (fw *fileWriter) rotate() error {
	name, err := rotatedName(fw.path, time.Now())
	if err != nil {
		return err
	}
	if err := os.Rename(fw.path, name); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	f, err := openLog(fw.path)
	if err != nil {
		return err
	}
	old := fw.f
	fw.f, fw.size = f, 0
	return errors.Join(old.Close(), pruneRotated(fw.path, fw.opts.MaxFiles-1))
}

// rotatedName returns the name for the file rotated at t: kubelet's
// <path>.<YYYYMMDD-hhmmss>, plus .<n> when an earlier rotation in the same
// second exists, n one more than the highest kept, so that names stay in
// rotation order even after the oldest ones are pruned.
func rotatedName(path string, t time.Time) (string, error) {
	stamp := t.UTC().Format(rotatedSuffix)
	rotated, err := rotatedFiles(path)
	if err != nil {
		return "", err
	}
	n := -1
	for _, name := range rotated {
		if s, c := rotatedKey(path, name); s == stamp {
			n = max(n, c)
		}
	}
	if n < 0 {
		return path + "." + stamp, nil
	}
	return fmt.Sprintf("%s.%s.%d", path, stamp, n+1), nil
}

// rotatedKey splits a rotated file's name into its timestamp and same-second
// counter.
func rotatedKey(path, name string) (string, int) {
	stamp, counter, _ := strings.Cut(strings.TrimPrefix(name, path+"."), ".")
	n, _ := strconv.Atoi(counter)
	return stamp, n
}

// rotatedFiles returns the rotated files of path, oldest first.
func rotatedFiles(path string) ([]string, error) {
	names, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, fmt.Errorf("list rotated logs: %w", err)
	}
	sort.Slice(names, func(i, j int) bool {
		si, ci := rotatedKey(path, names[i])
		sj, cj := rotatedKey(path, names[j])
		if si != sj {
			return si < sj
		}
		return ci < cj
	})
	return names, nil
}

func pruneRotated(path string, keep int) error {
	names, err := rotatedFiles(path)
	if err != nil {
		return err
	}
	var errs []error
	for len(names) > keep {
		if err := os.Remove(names[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		names = names[1:]
	}
	return errors.Join(errs...)
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}
