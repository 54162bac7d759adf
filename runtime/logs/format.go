// Package logs writes and reads container logs in the CRI format that
// kubelet writes and `kubectl logs` reads: one record per line,
//
//	<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n
//
// where P marks a chunk of a line longer than the line buffer and F the
// chunk that completes a line.
package logs

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Stream names a container output stream as the CRI format spells it.
type Stream string

// The two streams a container writes.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Record tags.
const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// PodDir returns the directory kubelet uses for one pod's logs:
// <logDir>/<namespace>_<name>_<uid>.
func PodDir(logDir, namespace, name string, uid types.UID) string {
	return filepath.Join(logDir, namespace+"_"+name+"_"+string(uid))
}

// Path returns the log file of one container attempt:
// <PodDir>/<container>/<attempt>.log.
func Path(podDir, container string, attempt int) string {
	return filepath.Join(podDir, container, strconv.Itoa(attempt)+".log")
}

// appendRecord appends one CRI record for content (without its newline).
func appendRecord(dst []byte, t time.Time, s Stream, partial bool, content []byte) []byte {
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, ' ')
	dst = append(dst, s...)
	dst = append(dst, ' ')
	if partial {
		dst = append(dst, tagPartial)
	} else {
		dst = append(dst, tagFull)
	}
	dst = append(dst, ' ')
	dst = append(dst, content...)
	return append(dst, '\n')
}

// record is one parsed log line. content aliases the parsed buffer.
type record struct {
	time    time.Time
	stream  Stream
	partial bool
	content []byte
}

var errMalformed = errors.New("malformed CRI log record")

// parseRecord parses one line without its trailing newline.
func parseRecord(line []byte) (record, error) {
	var r record
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return r, errMalformed
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return r, fmt.Errorf("%w: timestamp: %w", errMalformed, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != string(Stdout) && string(stream) != string(Stderr)) {
		return r, errMalformed
	}
	// The tag field may grow ':'-separated flags in the CRI format; only the
	// first one is defined.
	tags, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(tags) == 0 {
		return r, errMalformed
	}
	r.time, r.stream, r.content = t, Stream(stream), content
	r.partial = tags[0] == tagPartial
	return r, nil
}
