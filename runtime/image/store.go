package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Options configure a Store. The zero value is not usable: Root is
// required.
type Options struct {
	// Root is the store's directory, <--root>/images. It is created
	// mode 0700: the unpacked layers keep their setuid files, owned by
	// host root, so no other host user may reach them.
	Root string
	// InsecureRegistries are HOST[:PORT] registries reached over plain
	// HTTP or over TLS without verification (--insecure-registry).
	// Loopback registries (127.0.0.0/8, ::1, localhost) are always
	// treated so, as in docker and containerd; nothing else is, RFC 1918
	// addresses included.
	InsecureRegistries []string
	// Mirrors are registry hosts tried, in order, before docker.io for
	// docker.io images (--registry-mirror).
	Mirrors []string
	// AuthFile is a docker config.json with registry credentials; ""
	// means root's ~/.docker/config.json (--registry-auth-file). A
	// missing file means no credentials.
	AuthFile string
	// Log receives the store's events; nil discards them.
	Log *slog.Logger
	// Metrics registers the pull metrics when not nil: pull duration,
	// bytes downloaded, pulls by result.
	Metrics prometheus.Registerer
}

// ErrNotFound matches (errors.Is) the error for an image the store does
// not hold.
var ErrNotFound = errors.New("image not found in the local store")

// Store keeps images under Options.Root:
//
//	lock                    flock'd for each short metadata change
//	blobs/sha256/HEX        manifests, indexes and configs as pulled
//	layers/HEX/fs           a layer unpacked in overlay's format, HEX its diffID
//	layers/HEX/meta.json    the layer's size
//	images/HEX.json         an image record (names, manifest, config), HEX its ID
//	tmp/work-*              work in progress, flock'd by its owner
//
// Everything appears under blobs/, layers/ and images/ by an atomic
// rename from tmp/, so a reader never sees a half-written file or a
// half-unpacked layer, and a crash leaves only tmp/ entries, which Open
// removes when their owner is gone. Several processes (the agent and the
// CLI) may use one store at once. A Store is safe for concurrent use.
type Store struct {
	root string
	log  *slog.Logger
	reg  registryConfig
	met  *metrics

	pulls  flights
	layers flights
	// usage is how full the filesystem under root is, in percent:
	// usedPct but in tests.
	usage func() (float64, error)

	// mu serialises this process's holders of the flock on lockFile: a
	// flock excludes other open files, not goroutines sharing one.
	mu       sync.Mutex
	lockFile *os.File
}

// record is an image's file under images/.
type record struct {
	ID          string    `json:"id"`
	Names       []string  `json:"names,omitempty"`
	RepoDigests []string  `json:"repoDigests,omitempty"`
	Manifest    string    `json:"manifest"`
	DiffIDs     []string  `json:"diffIDs"`
	Config      Config    `json:"config"`
	Created     time.Time `json:"created,omitzero"`
	LastUsed    time.Time `json:"lastUsed,omitzero"`
}

// layerMeta is a layer's meta.json.
type layerMeta struct {
	Size int64 `json:"size"`
}

// Open opens the store at opts.Root, creating it if needed, and removes
// the work directories that crashed pulls left behind.
func Open(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("open image store: no root directory")
	}
	s := &Store{root: opts.Root, log: opts.Log}
	s.usage = s.usedPct
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	// MkdirAll keeps the mode of a directory that exists; the store must
	// be closed to other users whatever made it.
	if err := os.Chmod(s.root, 0o700); err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	for _, d := range []string{"blobs/sha256", "layers", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.root, d), 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	// Read-only: flock needs no write access, and a file held open for
	// writing would keep the filesystem under --root from being remounted
	// read-only (EBUSY), as an operator or the kernel may have to.
	f, err := os.OpenFile(filepath.Join(s.root, "lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s.lockFile = f
	if s.reg, err = newRegistryConfig(opts); err != nil {
		f.Close()
		return nil, err
	}
	if s.met, err = newMetrics(opts.Metrics); err != nil {
		f.Close()
		return nil, err
	}
	s.sweep()
	return s, nil
}

// Close releases the store's lock file. Pulls in progress must have
// returned.
func (s *Store) Close() error {
	return s.lockFile.Close()
}

// locked runs fn holding the store's lock, against this process's other
// goroutines and against other processes.
func (s *Store) locked(fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := unix.Flock(int(s.lockFile.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock image store %s: %w", s.root, err)
	}
	defer unix.Flock(int(s.lockFile.Fd()), unix.LOCK_UN)
	return fn()
}

// workDir is a new directory under tmp/, flock'd until release so that
// no other process's Open sweeps it away while it is in use.
type workDir struct {
	path string
	f    *os.File
}

// newWorkDir makes and locks a work directory. It does so under the store
// lock, as sweep decides under it, so that a sweep never sees a new
// directory before its owner has locked it.
func (s *Store) newWorkDir() (*workDir, error) {
	var w *workDir
	err := s.locked(func() error {
		p, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "work-")
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err == nil {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		}
		if err != nil {
			os.RemoveAll(p)
			return err
		}
		w = &workDir{path: p, f: f}
		return nil
	})
	return w, err
}

// release removes what is left of the work directory (nothing once it
// has been renamed into place) and drops its lock.
func (w *workDir) release() {
	os.RemoveAll(w.path)
	w.f.Close()
}

// sweep removes what crashed processes left: the work directories no
// live process holds, and the temporary files of atomic writes, which
// are only made under the store lock. Deciding happens under the store
// lock; the removal of a stale directory, which may be large, happens
// after it, holding the directory's own lock.
func (s *Store) sweep() {
	var stale []*workDir
	err := s.locked(func() error {
		for _, d := range []string{"images", "blobs/sha256"} {
			tmps, _ := filepath.Glob(filepath.Join(s.root, d, ".tmp-*"))
			for _, p := range tmps {
				os.Remove(p)
			}
		}
		dir := filepath.Join(s.root, "tmp")
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
				f.Close()
				continue
			}
			stale = append(stale, &workDir{path: p, f: f})
		}
		return nil
	})
	if err != nil {
		s.log.Warn("sweep image store work directories", "err", err)
	}
	for _, w := range stale {
		w.release()
	}
}

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.root, "images", strings.TrimPrefix(id, "sha256:")+".json")
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

// writeFileAtomic writes data to path through a temporary file in the
// same directory, synced before the rename, so a crash leaves the old
// content or the new, never a torn file.
func writeFileAtomic(path string, data []byte) error {
	return writeFile(path, data, true)
}

// writeFile replaces path with data through a temporary file and a rename,
// synced to disk first when durable.
func writeFile(path string, data []byte, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func (s *Store) saveRecord(r *record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.recordPath(r.ID), b); err != nil {
		return fmt.Errorf("save image record %s: %w", r.ID, err)
	}
	return nil
}

// records reads every image record.
func (s *Store) records() ([]*record, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, "images"))
	if err != nil {
		return nil, fmt.Errorf("read image store: %w", err)
	}
	var out []*record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.root, "images", e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return nil, fmt.Errorf("read image store: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("read image record %s: %w", e.Name(), err)
		}
		out = append(out, &r)
	}
	return out, nil
}

// find returns the record that ref names: a name, an ID or a repo digest,
// as given or normalised by ParseReference.
func (s *Store) find(ref string) (*record, error) {
	rs, err := s.records()
	if err != nil {
		return nil, err
	}
	keys := []string{ref}
	if p, err := ParseReference(ref); err == nil {
		keys = append(keys, p.String())
	}
	for _, r := range rs {
		for _, k := range keys {
			if r.ID == k || slices.Contains(r.Names, k) || slices.Contains(r.RepoDigests, k) {
				return r, nil
			}
		}
	}
	return nil, fmt.Errorf("%s: %w", ref, ErrNotFound)
}

// clone is a deep copy of img.
func (img *Image) clone() *Image {
	c := *img
	c.Names = slices.Clone(img.Names)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.Layers = slices.Clone(img.Layers)
	c.Config.Entrypoint = slices.Clone(img.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(img.Config.Cmd)
	c.Config.Env = slices.Clone(img.Config.Env)
	return &c
}

// image makes the Image a record describes.
func (s *Store) image(r *record) (*Image, error) {
	img := (&Image{
		ID:          r.ID,
		Names:       r.Names,
		RepoDigests: r.RepoDigests,
		Config:      r.Config,
		Created:     r.Created,
		LastUsed:    r.LastUsed,
	}).clone()
	for i, d := range r.DiffIDs {
		// overlay refuses a lower directory twice (ELOOP), and images
		// repeat layers (the empty one above all). Only the topmost
		// copy counts: every entry of a lower copy is decided again by
		// the same entry above it, so the merged tree is the same.
		if slices.Contains(r.DiffIDs[i+1:], d) {
			continue
		}
		m, err := s.readLayerMeta(d)
		if err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", r.ID, d, err)
		}
		img.Size += m.Size
		img.Layers = append(img.Layers, filepath.Join(s.layerDir(d), "fs"))
	}
	return img, nil
}

func (s *Store) readLayerMeta(diffID string) (layerMeta, error) {
	var m layerMeta
	b, err := os.ReadFile(filepath.Join(s.layerDir(diffID), "meta.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// Get returns the local image that ref names: a Reference.String(), an
// ID "sha256:…" or a repo digest. It never pulls; an image the store
// does not hold is ErrNotFound (wrapped).
func (s *Store) Get(ref string) (*Image, error) {
	var img *Image
	err := s.locked(func() error {
		r, err := s.find(ref)
		if err != nil {
			return err
		}
		img, err = s.image(r)
		return err
	})
	return img, err
}

// List returns every image in the store.
func (s *Store) List() ([]*Image, error) {
	var out []*Image
	err := s.locked(func() error {
		rs, err := s.records()
		if err != nil {
			return err
		}
		for _, r := range rs {
			img, err := s.image(r)
			if err != nil {
				return err
			}
			out = append(out, img)
		}
		return nil
	})
	return out, err
}

// Tag adds name to the names of the image ref names; the name leaves any
// other image that had it.
func (s *Store) Tag(ref string, name Reference) error {
	return s.locked(func() error {
		r, err := s.find(ref)
		if err != nil {
			return err
		}
		return s.claimNames(r, []string{name.String()})
	})
}

// claimNames gives r the names, taking them from any other image, and
// saves every record it changed. The store's lock must be held.
func (s *Store) claimNames(r *record, names []string) error {
	rs, err := s.records()
	if err != nil {
		return err
	}
	for _, o := range rs {
		if o.ID == r.ID {
			continue
		}
		kept := slices.DeleteFunc(slices.Clone(o.Names), func(n string) bool { return slices.Contains(names, n) })
		if len(kept) != len(o.Names) {
			// The image stays without the name (a dangling image, as in
			// docker) until it is pruned: a pod may still run from it.
			o.Names = kept
			if err := s.saveRecord(o); err != nil {
				return err
			}
		}
	}
	for _, n := range names {
		if !slices.Contains(r.Names, n) {
			r.Names = append(r.Names, n)
		}
	}
	return s.saveRecord(r)
}

// Remove removes a name from the image it names; the image goes when it
// has no name left, or when ref is its ID or a repo digest, and its
// layers go when no other image needs them.
func (s *Store) Remove(ref string) error {
	var gone []string
	err := s.locked(func() error {
		r, err := s.find(ref)
		if err != nil {
			return err
		}
		names := slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool {
			return n == ref || n == normalise(ref)
		})
		if len(names) > 0 && len(names) < len(r.Names) {
			r.Names = names
			return s.saveRecord(r)
		}
		gone, err = s.dropImage(r)
		return err
	})
	s.removeDirs(gone)
	return err
}

// normalise returns ref as ParseReference spells it, or ref itself.
func normalise(ref string) string {
	if p, err := ParseReference(ref); err == nil {
		return p.String()
	}
	return ref
}

// usedGranularity is how far apart two recorded uses of an image must be:
// the garbage collector's order needs no finer clock, and a start then
// seldom writes the record.
const usedGranularity = time.Minute

// MarkUsed records that a container starts from image id now, for the
// garbage collector's oldest-first order. It is on every container's start
// path, so it writes the record at most once per usedGranularity, and
// without fsync: a use lost in a crash only makes the image look older to
// the collector, and an image in use is never collected anyway.
func (s *Store) MarkUsed(id string) error {
	return s.locked(func() error {
		r, err := s.find(id)
		if err != nil {
			return err
		}
		now := time.Now()
		if now.Sub(r.LastUsed) < usedGranularity && !now.Before(r.LastUsed) {
			return nil
		}
		r.LastUsed = now
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(s.recordPath(r.ID), b, false); err != nil {
			return fmt.Errorf("save image record %s: %w", r.ID, err)
		}
		return nil
	})
}
