package agent

import (
	"log/slog"

	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/manifests"
)

// warningLog logs the warnings of each version of a pod (each UID) once,
// when it first appears in a snapshot: what `peapod validate` prints of
// the file, so that a manifest dropped into the directory has no ignored
// field the operator cannot see. Only the source's callback goroutine
// calls observe.
type warningLog struct {
	log  *slog.Logger
	seen map[types.UID]bool
}

func newWarningLog(log *slog.Logger) *warningLog {
	return &warningLog{log: log, seen: map[types.UID]bool{}}
}

// observe logs the warnings of the pods of s that the last snapshot did
// not hold.
func (w *warningLog) observe(s manifests.Snapshot) {
	seen := make(map[types.UID]bool, len(s.Pods))
	for _, p := range s.Pods {
		seen[p.UID()] = true
		if w.seen[p.UID()] {
			continue
		}
		for _, msg := range p.Warnings {
			w.log.Warn("manifest warning", "pod", p.Key(), "file", p.File, "warning", msg)
		}
	}
	w.seen = seen
}
