package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// pollInterval is how often a follower looks for new output or a rotation.
const pollInterval = 100 * time.Millisecond

// ReadOptions selects what Read prints. The zero value prints every line of
// the live file, without timestamps, and returns at its end.
type ReadOptions struct {
	// Follow keeps reading as the file grows and across rotations until the
	// context is done.
	Follow bool
	// Tail, when positive, starts at the Tail-th line from the end of the
	// live file.
	Tail int
	// Timestamps prefixes each line with the time its first chunk was read.
	Timestamps bool
}

// Read prints the content of the CRI log file at path to w: the CRI prefix
// stripped, partial chunks joined into their line, one line per line. Lines
// that do not parse are skipped. With Follow it returns ctx.Err() when ctx
// is done.
func Read(ctx context.Context, w io.Writer, path string, opts ReadOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open container log: %w", err)
	}
	defer func() { f.Close() }()
	if opts.Tail > 0 {
		off, err := tailOffset(f, opts.Tail)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("seek container log: %w", err)
		}
	}
	p := &printer{w: w, timestamps: opts.Timestamps}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		if err := p.drain(r); err != nil {
			return err
		}
		if !opts.Follow {
			return p.flush()
		}
		next, err := waitForMore(ctx, f, path)
		if err != nil {
			return err
		}
		if next != nil {
			// The writer rotated: f holds its final records (already read
			// to EOF, records are written whole) and next is the new file.
			f.Close()
			f = next
			r.Reset(f)
		}
	}
}

// waitForMore sleeps until f may have grown and returns a new file to read
// when path has been rotated away from f.
func waitForMore(ctx context.Context, f *os.File, path string) (*os.File, error) {
	t := time.NewTimer(pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
	}
	cur, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat container log: %w", err)
	}
	now, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		// Between the rename and the creation of the new file.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stat container log: %w", err)
	}
	if os.SameFile(cur, now) {
		return nil, nil
	}
	// Read what was appended to f between the last read and the rename
	// before switching: the caller drains f again only if we return nil,
	// so check its size against the read position.
	if pos, err := f.Seek(0, io.SeekCurrent); err == nil && pos < cur.Size() {
		return nil, nil
	}
	return nextFile(path, cur)
}

// nextFile opens the file written after cur: the rotated file that follows
// it, or the live file. Following the rotated files in order matters when
// the writer rotated more than once between two polls. If cur was already
// pruned, the output in between is lost and the live file comes next.
func nextFile(path string, cur os.FileInfo) (*os.File, error) {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	next := path
	for i, name := range rotated {
		if fi, err := os.Stat(name); err == nil && os.SameFile(fi, cur) {
			if i+1 < len(rotated) {
				next = rotated[i+1]
			}
			break
		}
	}
	f, err := os.Open(next)
	if errors.Is(err, os.ErrNotExist) {
		// Pruned or not created yet: look again at the next poll.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return f, nil
}

// tailOffset returns the offset of the n-th line from the end of f, lines
// counted after joining partial chunks.
func tailOffset(f *os.File, n int) (int64, error) {
	starts := make([]int64, 0, n)
	var off, lineStart int64
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			var rest []byte
			rest, err = r.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read container log: %w", err)
		}
		if len(line) == 0 || line[len(line)-1] != '\n' {
			break
		}
		off += int64(len(line))
		if rec, perr := parseRecord(line[:len(line)-1]); perr == nil && !rec.partial {
			if len(starts) == n {
				starts = starts[1:]
			}
			starts = append(starts, lineStart)
			lineStart = off
		}
	}
	if len(starts) == 0 {
		return lineStart, nil
	}
	return starts[0], nil
}

// printer joins partial chunks and prints lines.
type printer struct {
	w          io.Writer
	timestamps bool
	line       []byte
	first      time.Time
	// carry holds an incomplete last record, read before its newline.
	carry []byte
}

// drain prints every complete record r holds until its EOF.
func (p *printer) drain(r *bufio.Reader) error {
	for {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 {
			p.carry = append(p.carry, b...)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read container log: %w", err)
		}
		line := p.carry[:len(p.carry)-1]
		if rec, perr := parseRecord(line); perr == nil {
			if err := p.add(rec); err != nil {
				return err
			}
		}
		p.carry = p.carry[:0]
	}
}

func (p *printer) add(rec record) error {
	if len(p.line) == 0 {
		p.first = rec.time
	}
	p.line = append(p.line, rec.content...)
	if rec.partial {
		return nil
	}
	return p.flush()
}

// flush prints the line being joined, if any.
func (p *printer) flush() error {
	if len(p.line) == 0 && p.first.IsZero() {
		return nil
	}
	var out []byte
	if p.timestamps {
		out = p.first.AppendFormat(out, time.RFC3339Nano)
		out = append(out, ' ')
	}
	out = append(append(out, p.line...), '\n')
	p.line, p.first = p.line[:0], time.Time{}
	if _, err := p.w.Write(out); err != nil {
		return fmt.Errorf("write log line: %w", err)
	}
	return nil
}
