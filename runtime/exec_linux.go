package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/runtime/shim"
)

// ExecOptions describes a process to run in a running container.
type ExecOptions struct {
	// Args is the command; Args[0] is looked up in the container's PATH.
	Args []string
	// TTY gives the process a terminal from the container's devpts, of
	// Size; its output all comes on Stdout.
	TTY  bool
	Size shim.WindowSize
	// Resize, with TTY, carries the terminal's size changes.
	Resize <-chan shim.WindowSize
	// Stdin is streamed to the process; nil gives it an empty stdin.
	// Stdout and Stderr receive its output; nil discards it.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs a process in the named container of the pod, as kubectl exec
// does, and returns its exit code once it has exited (126 and 127 for a
// command that cannot be executed or is not found). The process runs in
// every namespace and cgroup of the container, as its user, with its
// capabilities, no_new_privs, seccomp filter, environment and working
// directory. When ctx ends first, the process is killed and Exec returns
// ctx.Err(); bound ctx for a timeout. Exec is safe for concurrent use.
func (r *Runtime) Exec(ctx context.Context, uid types.UID, container string, opts ExecOptions) (int, error) {
	return Exec(ctx, r.opts.StateDir, uid, container, opts)
}

// Exec is Runtime.Exec for the pods under stateDir, without a Runtime: it
// talks to the pod's shim, which outlives the agent, so it works for the
// pods of an agent that has restarted, or is down.
func Exec(ctx context.Context, stateDir string, uid types.UID, container string, opts ExecOptions) (int, error) {
	dir := filepath.Join(stateDir, "pods", string(uid))
	if _, err := os.Stat(filepath.Join(dir, shim.PodFile)); errors.Is(err, fs.ErrNotExist) {
		return -1, fmt.Errorf("exec in pod %s: no such pod under %s", uid, stateDir)
	}
	c := shim.NewClient(dir)
	defer c.Close()
	return c.Exec(ctx, &shim.ExecRequest{
		Container: container, Args: opts.Args,
		TTY: opts.TTY, Width: opts.Size.Width, Height: opts.Size.Height,
	}, shim.ExecIO{Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr, Resize: opts.Resize})
}
