package runtime

import (
	"bytes"
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// maxExecOutput is how much of an exec probe's or hook's output is kept:
// kubelet keeps 10 KiB for a probe's message.
const maxExecOutput = 10 << 10

// ActionExecer runs the exec actions of probes and hooks in containers, as
// reconcile.Execer: through Exec, so each runs as `peapod exec` would, in
// every namespace and cgroup of the container, with its identity,
// capabilities and seccomp filter.
type ActionExecer struct {
	Runtime *Runtime
}

// Exec implements reconcile.Execer. A command still running after timeout
// (zero: none of its own) is killed, and the error wraps
// context.DeadlineExceeded.
func (e ActionExecer) Exec(ctx context.Context, uid types.UID, container string, cmd []string, timeout time.Duration) (int, []byte, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out := &boundedBuffer{max: maxExecOutput}
	code, err := e.Runtime.Exec(ctx, uid, container, ExecOptions{Args: cmd, Stdout: out, Stderr: out})
	return code, out.bytes(), err
}

// boundedBuffer keeps the first max bytes written to it, from both of a
// process's output streams. Safe for concurrent use.
type boundedBuffer struct {
	max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *boundedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
