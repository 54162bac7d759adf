package manifests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/apimachinery/pkg/types"
)

const (
	defaultResync = 20 * time.Second
	// defaultDebounce is short: it is the floor of every pod's start time.
	// A burst split across two rescans costs little, since a rescan decodes
	// only the files that changed.
	defaultDebounce = 5 * time.Millisecond
	// unwatchedPoll is how often the directory is rescanned while it cannot
	// be watched, typically because it does not exist yet.
	unwatchedPoll = time.Second
	// maxDelayFactor bounds the debounce: a stream of events still gets a
	// rescan every maxDelayFactor*Debounce.
	maxDelayFactor = 10
)

// SourceOptions configures a Source. Zero fields other than Dir take
// defaults.
type SourceOptions struct {
	// Dir is the manifest directory. A relative path is made absolute by
	// NewSource.
	Dir string
	// Resync is the period of the full rescan that catches what the watcher
	// cannot see, such as a symlink target edited outside Dir. Default 20s.
	Resync time.Duration
	// Debounce is how long the directory must stay quiet after a change
	// before it is rescanned, unless the change is complete (see
	// runner.complete). Default 5ms.
	Debounce time.Duration
	// Log receives state changes, rejected manifests and the warnings of
	// new pods. Default: discarded.
	Log *slog.Logger
	// Policy decides which pods are valid beyond the manifests themselves.
	Policy Policy
}

// Source turns a directory of manifests into Snapshots of the desired state.
// Create it with NewSource. It holds only configuration: each Run keeps its
// own watch and cache.
type Source struct {
	dir      string
	resync   time.Duration
	debounce time.Duration
	log      *slog.Logger
	policy   Policy
}

// NewSource returns a Source for opts.Dir with defaults filled in.
func NewSource(opts SourceOptions) *Source {
	s := &Source{dir: absDir(opts.Dir), resync: opts.Resync, debounce: opts.Debounce, log: opts.Log, policy: opts.Policy}
	if s.resync <= 0 {
		s.resync = defaultResync
	}
	if s.debounce <= 0 {
		s.debounce = defaultDebounce
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("dir", s.dir)
	return s
}

// Load reads every manifest in dir once, without watching it. A directory
// that cannot be used is reported as the only error, with File set to dir.
func Load(dir string) Snapshot {
	return Policy{}.Load(dir)
}

// Load is the package's Load under policy.
func (policy Policy) Load(dir string) Snapshot {
	return newScanner(absDir(dir), policy).scan()
}

// absDir makes dir absolute, as the pods' File fields are. filepath.Abs
// fails only when the working directory is gone; the relative path still
// works then.
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return filepath.Clean(dir)
}

// Run watches the directory until ctx is done, then returns nil. It calls
// update from its own goroutine: once after the first scan, even when the
// directory is empty or missing, and then each time the desired state
// changes. The callee may keep the Snapshot but must not modify it or its
// Pods, which later snapshots share.
//
// Every relevant event leads, after the debounce, to a full rescan that
// decodes only the files that changed; a rescan also runs every Resync,
// after a watcher error (including a queue overflow), and every second
// while the directory is missing.
func (s *Source) Run(ctx context.Context, update func(Snapshot)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch manifest directory %s: %w", s.dir, err)
	}
	// Close waits for the watcher's reading goroutine to exit.
	defer w.Close()
	r := &runner{Source: s, w: w, sc: newScanner(s.dir, s.policy), update: update}
	return r.loop(ctx)
}

// runner is the state of one Run.
type runner struct {
	*Source
	w      *fsnotify.Watcher
	sc     *scanner
	update func(Snapshot)

	watched     fileID // directory the watch was added on
	watchFailed bool   // the last attempt to watch failed for a reason other than a missing directory
	last        *Snapshot
}

// loop scans once, then rescans after a burst of relevant events, after a
// watcher error and when the safety timer fires, until ctx is done.
func (r *runner) loop(ctx context.Context) error {
	resync := time.NewTimer(r.rescan())
	defer resync.Stop()
	flush := time.NewTimer(0)
	flush.Stop()
	defer flush.Stop()
	db := debouncer{quiet: r.debounce, max: maxDelayFactor * r.debounce}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-r.w.Events:
			if !ok {
				return errors.New("manifest watcher closed unexpectedly")
			}
			if !r.relevant(ev) {
				continue
			}
			if d := db.add(time.Now(), r.complete(ev)); d > 0 {
				flush.Reset(d)
				continue
			}
			// Now, rather than through the timer, which the next event of
			// a burst would push back.
			flush.Stop()
			db.flushed(time.Now())
			resync.Reset(r.rescan())
		case err, ok := <-r.w.Errors:
			if !ok {
				return errors.New("manifest watcher closed unexpectedly")
			}
			r.log.Warn("manifest watcher failed; rescanning", "err", err)
			resync.Reset(r.rescan())
		case <-flush.C:
			db.flushed(time.Now())
			resync.Reset(r.rescan())
		case <-resync.C:
			resync.Reset(r.rescan())
		}
	}
}

// relevant reports whether an event can change the desired state: it
// concerns the directory itself, a manifest, or the "..data" symlink (and
// its timestamped targets) that Kubernetes' atomic writer swaps to update
// every file of a ConfigMap or Secret volume at once.
func (r *runner) relevant(ev fsnotify.Event) bool {
	if ev.Name == r.dir {
		return true
	}
	name := filepath.Base(ev.Name)
	return filepath.Dir(ev.Name) == r.dir && (isManifestName(name) || strings.HasPrefix(name, ".."))
}

// complete reports whether the change an event reports is whole the
// moment it is seen, so the rescan need not wait for the directory to go
// quiet: a name removed or renamed away, or a manifest that no process
// holds open for writing, as after the atomic rename that tools and
// Kubernetes' own writers use. A file still open for writing may be half
// written (an editor or a shell redirection at work) and waits for the
// debounce, as does anything whose state cannot be told.
func (r *runner) complete(ev fsnotify.Event) bool {
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		return true
	}
	name := filepath.Base(ev.Name)
	return ev.Name != r.dir && isManifestName(name) && !strings.HasPrefix(name, ".") && !openForWriting(ev.Name)
}

// rescan makes sure the directory is watched, scans it, passes the result
// to update if it differs from the last one, and returns when the next
// safety rescan is due.
func (r *runner) rescan() time.Duration {
	next := r.resync
	if !r.ensureWatch() {
		next = min(next, unwatchedPoll)
	}
	snap := r.sc.scan()
	if r.last != nil && sameSnapshot(*r.last, snap) {
		r.log.Debug("manifests unchanged")
		return next
	}
	r.logChange(snap)
	r.last = &snap
	r.update(snap)
	return next
}

// ensureWatch watches the directory, again if it was removed or replaced
// since the watch was added, and reports whether it is watched. Failures
// are logged once, when they start; a missing directory is not logged here
// because the scan reports it.
func (r *runner) ensureWatch() bool {
	err := r.watch()
	switch {
	case err == nil && r.watchFailed:
		r.log.Info("watching manifest directory again")
	case err != nil && !r.watchFailed && !errors.Is(err, os.ErrNotExist):
		r.log.Warn("cannot watch manifest directory; polling it", "err", err)
	}
	r.watchFailed = err != nil && !errors.Is(err, os.ErrNotExist)
	return err == nil
}

// watch adds the watch on the directory unless it is already on the
// directory now at that path. fsnotify drops a watch whose directory was
// removed or renamed, hence the WatchList check.
func (r *runner) watch() error {
	fi, err := os.Stat(r.dir)
	if err != nil {
		return err
	}
	id := idOf(fi)
	if id.dev == r.watched.dev && id.ino == r.watched.ino && slices.Contains(r.w.WatchList(), r.dir) {
		return nil
	}
	// A watch on a replaced directory may still be registered; dropping it
	// fails harmlessly when fsnotify has already done so.
	_ = r.w.Remove(r.dir)
	r.watched = fileID{}
	if err := r.w.Add(r.dir); err != nil {
		return fmt.Errorf("watch %s: %w", r.dir, err)
	}
	r.watched = id
	return nil
}

// logChange logs a new desired state, and each error that was not in the
// last one, so that a broken file is logged once, not at every rescan.
func (r *runner) logChange(snap Snapshot) {
	var prev []FileError
	if r.last != nil {
		prev = r.last.Errors
	}
	for _, fe := range snap.Errors {
		if !slices.ContainsFunc(prev, func(p FileError) bool { return sameError(p, fe) }) {
			r.log.Warn("manifest rejected", "file", fe.File, "err", fe.Err)
		}
	}
	r.logWarnings(snap)
	held := 0
	for _, p := range snap.Pods {
		if p.Held {
			held++
		}
	}
	r.log.Info("desired state changed", "pods", len(snap.Pods), "held", held, "errors", len(snap.Errors))
}

// logWarnings logs the warnings of each pod version that was not in the
// last snapshot, so that each is logged once, when its manifest is read.
func (r *runner) logWarnings(snap Snapshot) {
	known := make(map[types.UID]bool)
	if r.last != nil {
		for _, p := range r.last.Pods {
			known[p.UID()] = true
		}
	}
	for _, p := range snap.Pods {
		if known[p.UID()] {
			continue
		}
		for _, w := range p.Warnings {
			r.log.Warn("manifest warning", "file", p.File, "pod", p.Key(), "warning", w)
		}
	}
}

// sameSnapshot reports whether two snapshots ask for the same pods and
// report the same errors. The UID is the content hash, so equal UIDs mean
// equal pods.
func sameSnapshot(a, b Snapshot) bool {
	return a.RefusedDir == b.RefusedDir && slices.EqualFunc(a.Pods, b.Pods, samePod) && slices.EqualFunc(a.Errors, b.Errors, sameError)
}

func samePod(a, b *Pod) bool {
	return a.UID() == b.UID() && a.Key() == b.Key() && a.File == b.File && a.Doc == b.Doc && a.Held == b.Held
}

// sameError compares errors by message: each scan builds new error values.
func sameError(a, b FileError) bool {
	return a.File == b.File && a.Err.Error() == b.Err.Error()
}

// debouncer delays a rescan until events stop for quiet, but no longer
// than max after the first event, so a steady stream still gets scanned.
// A complete change that comes after a quiet period is scanned at once
// (the leading edge); the events that follow it within quiet are
// debounced again (a burst of renames costs two rescans, not one each).
type debouncer struct {
	quiet, max time.Duration
	first      time.Time // first event since the last flush; zero when none
	lastFlush  time.Time
}

// add records an event at now and returns how long to wait before the
// rescan. complete tells that the event's change is whole already.
func (d *debouncer) add(now time.Time, complete bool) time.Duration {
	if complete && d.first.IsZero() && now.Sub(d.lastFlush) >= d.quiet {
		return 0
	}
	if d.first.IsZero() {
		d.first = now
	}
	return max(0, min(d.quiet, d.first.Add(d.max).Sub(now)))
}

// flushed records that the rescan ran at now.
func (d *debouncer) flushed(now time.Time) { d.first, d.lastFlush = time.Time{}, now }
