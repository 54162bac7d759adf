package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/logs"
)

// Termination messages, as kubelet collects them: a file per container
// attempt, mounted at the container's terminationMessagePath, read when the
// attempt has exited.

const (
	defaultTerminationMessagePath = "/dev/termination-log"
	// maxTerminationMessage is how much of the file kubelet reads.
	maxTerminationMessage = 4096
	// With FallbackToLogsOnError, the end of the log of a failed attempt:
	// at most fallbackLines lines and fallbackBytes bytes, as kubelet.
	fallbackLines     = 80
	fallbackBytes     = 2048
	terminationSuffix = ".termination-log"
)

// terminationLog is the host file of an attempt's termination message,
// beside its writable layer so that it counts towards the container's
// local storage.
func (r *Runtime) terminationLog(pod *corev1.Pod, name string, attempt int) string {
	return r.attemptRoot(pod, name, attempt) + terminationSuffix
}

// mountTerminationLog creates the attempt's empty termination message file
// and mounts it at the container's terminationMessagePath. The file is
// world-writable, as kubelet makes it, so that whatever user the container
// runs as can write it.
func (r *Runtime) mountTerminationLog(spec *container.Spec, pod *corev1.Pod, c *corev1.Container, attempt int) error {
	path := r.terminationLog(pod, c.Name, attempt)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create termination message file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return fmt.Errorf("create termination message file: %w", err)
	}
	f.Close()
	// The umask narrowed the mode OpenFile asked for.
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("create termination message file: %w", err)
	}
	dest := c.TerminationMessagePath
	if dest == "" {
		dest = defaultTerminationMessagePath
	}
	spec.Mounts = append(spec.Mounts, container.Mount{Source: path, Destination: dest})
	return nil
}

// addTerminationMessages appends to the message of each exited attempt
// what it left in its termination message file or, with
// FallbackToLogsOnError when it failed and left nothing, the end of its
// log.
func (r *Runtime) addTerminationMessages(pod *corev1.Pod, c *corev1.Container, states []reconcile.ContainerState) {
	for i := range states {
		s := &states[i]
		if s.Phase != reconcile.ContainerExited {
			continue
		}
		msg := readHead(r.terminationLog(pod, c.Name, s.Attempt), maxTerminationMessage)
		if msg == "" && s.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
			msg = r.logTail(pod, c.Name, s.Attempt)
		}
		if msg == "" {
			continue
		}
		if s.Message != "" {
			s.Message += ": "
		}
		s.Message += msg
	}
}

// readHead returns the first n bytes of a file, "" if there is none.
func readHead(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return string(b)
}

// logTail returns the end of an attempt's log, as kubelet's fallback.
func (r *Runtime) logTail(pod *corev1.Pod, name string, attempt int) string {
	path := logs.Path(logs.PodDir(r.opts.LogDir, pod.Namespace, pod.Name, pod.UID), name, attempt)
	var b bytes.Buffer
	if err := logs.Read(context.Background(), &b, path, logs.ReadOptions{Tail: fallbackLines}); err != nil {
		return ""
	}
	out := b.Bytes()
	if len(out) > fallbackBytes {
		out = out[len(out)-fallbackBytes:]
	}
	return string(out)
}

// pruneTerminationLogs removes the termination message files of the
// attempts before the previous one, whose status is no longer reported.
func (r *Runtime) pruneTerminationLogs(pod *corev1.Pod, name string, attempt int) {
	dir := filepath.Dir(r.attemptRoot(pod, name, attempt))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		a, err := strconv.Atoi(strings.TrimSuffix(e.Name(), terminationSuffix))
		if err != nil || !strings.HasSuffix(e.Name(), terminationSuffix) || a >= attempt-1 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("remove old termination message", "uid", pod.UID, "container", name, "err", err)
		}
	}
}
