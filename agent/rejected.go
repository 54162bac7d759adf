package agent

import (
	"fmt"
	"io"
	"sync"

	"github.com/peapod/peapod/manifests"
)

// RejectedFile is a manifest file the agent refused, as the status API
// reports it.
type RejectedFile struct {
	File  string `json:"file"`
	Error string `json:"error"`
	// Kept names the pods (namespace/name) that keep running from the
	// file's last good version.
	Kept []string `json:"kept,omitempty"`
}

// rejectedFiles holds the rejected files of the latest snapshot. Safe for
// concurrent use: the source's callback writes, the status API reads.
type rejectedFiles struct {
	mu    sync.Mutex
	files []RejectedFile
}

// observe records the errors of snapshot s.
func (r *rejectedFiles) observe(s manifests.Snapshot) {
	files := make([]RejectedFile, 0, len(s.Errors))
	for _, fe := range s.Errors {
		rf := RejectedFile{File: fe.File, Error: fe.Err.Error()}
		for _, p := range s.Pods {
			if p.Held && (p.File == fe.File || fe.File == s.RefusedDir) {
				rf.Kept = append(rf.Kept, p.Key())
			}
		}
		files = append(files, rf)
	}
	r.mu.Lock()
	r.files = files
	r.mu.Unlock()
}

func (r *rejectedFiles) list() []RejectedFile {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RejectedFile{}, r.files...)
}

// PrintRejected writes the rejected files for a person to read, after the
// pods: nothing when there are none.
func PrintRejected(w io.Writer, files []RejectedFile) error {
	if len(files) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\n%d manifest file(s) rejected (see `peapod validate FILE`):\n", len(files)); err != nil {
		return err
	}
	for _, f := range files {
		kept := ""
		if len(f.Kept) > 0 {
			kept = fmt.Sprintf(" (last good version kept running: %v)", f.Kept)
		}
		if _, err := fmt.Fprintf(w, "  %s%s\n", f.Error, kept); err != nil {
			return err
		}
	}
	return nil
}
