package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// launchTimeout bounds the wait for a new shim when ctx has no deadline.
const launchTimeout = 10 * time.Second

// Launch starts the shim for the pod whose state directory is dir by
// running exe (a peapod binary) as `exe internal-shim start dir`, and
// returns once the shim listens on its socket. The shim is not a child of
// the caller when Launch returns. Launch does not check for a running shim:
// the caller does, with Client.Ping.
func Launch(ctx context.Context, exe, dir string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, launchTimeout)
		defer cancel()
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create shim ready pipe: %w", err)
	}
	defer r.Close()
	waitErr, err := runStartStage(exe, w, dir)
	if err != nil {
		return err
	}
	msg, err := readReady(ctx, r)
	if err != nil {
		return err
	}
	if msg != "ok" {
		if msg == "" {
			msg = fmt.Sprintf("exited before it was ready (%v); see %s", waitErr, LogFile)
		}
		return fmt.Errorf("start shim: %s", msg)
	}
	return nil
}

// readReady reads the shim's first report line, or what it wrote before
// closing the pipe.
func readReady(ctx context.Context, r *os.File) (string, error) {
	if d, ok := ctx.Deadline(); ok {
		if err := r.SetReadDeadline(d); err != nil {
			return "", fmt.Errorf("wait for shim: %w", err)
		}
	}
	var buf bytes.Buffer
	b := make([]byte, 512)
	for {
		n, err := r.Read(b)
		buf.Write(b[:n])
		if line, _, ok := bytes.Cut(buf.Bytes(), []byte{'\n'}); ok {
			return strings.TrimSpace(string(line)), nil
		}
		if errors.Is(err, io.EOF) {
			return strings.TrimSpace(buf.String()), nil
		}
		if err != nil {
			return "", fmt.Errorf("wait for shim: %w", err)
		}
	}
}
