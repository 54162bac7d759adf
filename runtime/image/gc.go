package image

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// dropImage removes r's record and moves every layer no other image needs
// to tmp/, returning those directories for removal once the lock is
// released. A layer is renamed away whole, so nobody sees it half
// deleted. The store's lock must be held.
func (s *Store) dropImage(r *record) (gone []string, err error) {
	if err := os.Remove(s.recordPath(r.ID)); err != nil {
		return nil, fmt.Errorf("remove image %s: %w", r.ID, err)
	}
	// The config and manifest are the image's own: a config digest is
	// the image's ID, and a manifest names exactly one config.
	for _, d := range []string{r.ID, r.Manifest} {
		if err := os.Remove(filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove image blob", "blob", d, "err", err)
		}
	}
	rs, err := s.records()
	if err != nil {
		return nil, err
	}
	needed := neededLayers(rs)
	for _, d := range r.DiffIDs {
		if needed[strings.TrimPrefix(d, "sha256:")] {
			continue
		}
		dir, err := s.moveAway(s.layerDir(d))
		if err != nil {
			return gone, err
		}
		if dir != "" {
			gone = append(gone, dir)
		}
	}
	s.log.Info("image removed", "image", r.ID, "names", r.Names)
	return gone, nil
}

func neededLayers(rs []*record) map[string]bool {
	needed := map[string]bool{}
	for _, o := range rs {
		for _, d := range o.DiffIDs {
			needed[strings.TrimPrefix(d, "sha256:")] = true
		}
	}
	return needed
}

// moveAway renames dir into a new directory under tmp/ and returns that
// directory; "" if dir is already gone (another image's removal took a
// shared layer first).
func (s *Store) moveAway(dir string) (string, error) {
	trash, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "gone-")
	if err != nil {
		return "", err
	}
	if err := os.Rename(dir, filepath.Join(trash, "x")); err != nil {
		os.Remove(trash)
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("remove layer: %w", err)
	}
	return trash, nil
}

func (s *Store) removeDirs(dirs []string) {
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			s.log.Warn("remove image layer", "dir", d, "err", err)
		}
	}
}

// dirSize is the bytes a removed layer's meta.json recorded.
func dirSize(trash string) int64 {
	var m layerMeta
	b, err := os.ReadFile(filepath.Join(trash, "x", "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return 0
	}
	return m.Size
}

// removeOrphanLayers removes the layers no image record names: what a
// failed or interrupted pull unpacked. A pull of another process that is
// about to name such a layer finds it gone when it commits and unpacks it
// again. The store's lock must be held.
func (s *Store) removeOrphanLayers() ([]string, error) {
	rs, err := s.records()
	if err != nil {
		return nil, err
	}
	needed := neededLayers(rs)
	entries, err := os.ReadDir(filepath.Join(s.root, "layers"))
	if err != nil {
		return nil, fmt.Errorf("read image layers: %w", err)
	}
	var gone []string
	for _, e := range entries {
		if needed[e.Name()] {
			continue
		}
		dir, err := s.moveAway(filepath.Join(s.root, "layers", e.Name()))
		if err != nil {
			return gone, err
		}
		if dir != "" {
			gone = append(gone, dir)
		}
	}
	return gone, nil
}

// removeUnused removes, oldest LastUsed first, each image not in use for
// which more() says go on, then every layer no image needs. It returns
// the bytes the removed layers took.
func (s *Store) removeUnused(ctx context.Context, inUse func(id string) bool, more func() (bool, error)) (freed int64, err error) {
	var victims []*record
	err = s.locked(func() error {
		rs, err := s.records()
		victims = slices.DeleteFunc(rs, func(r *record) bool { return inUse(r.ID) })
		return err
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(victims, func(a, b *record) int {
		return cmp.Or(a.LastUsed.Compare(b.LastUsed), a.Created.Compare(b.Created))
	})
	for _, v := range victims {
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		if ok, err := more(); err != nil || !ok {
			return freed, err
		}
		var gone []string
		err := s.locked(func() error {
			// The image may have been put to use or re-pulled since the
			// list was read: decide again under the lock.
			r, err := s.find(v.ID)
			if errors.Is(err, ErrNotFound) || (err == nil && (inUse(r.ID) || r.LastUsed.After(v.LastUsed))) {
				return nil
			}
			if err != nil {
				return err
			}
			gone, err = s.dropImage(r)
			return err
		})
		freed += s.removeTrash(gone)
		if err != nil {
			return freed, err
		}
	}
	var gone []string
	err = s.locked(func() error {
		gone, err = s.removeOrphanLayers()
		return err
	})
	return freed + s.removeTrash(gone), err
}

func (s *Store) removeTrash(dirs []string) int64 {
	var n int64
	for _, d := range dirs {
		n += dirSize(d)
	}
	s.removeDirs(dirs)
	return n
}

// Prune removes every image for which inUse is false, and every layer no
// remaining image needs. It returns the bytes freed.
func (s *Store) Prune(ctx context.Context, inUse func(id string) bool) (freed int64, err error) {
	return s.removeUnused(ctx, inUse, func() (bool, error) { return true, nil })
}

// GC removes images as kubelet's image garbage collector does: when the
// filesystem under Root is more than highPct used, it removes images for
// which inUse is false, least recently used first, until usage is below
// lowPct; layers go when no image needs them. An image in use is never
// removed. It returns the bytes freed.
func (s *Store) GC(ctx context.Context, inUse func(id string) bool, highPct, lowPct int) (freed int64, err error) {
	if lowPct > highPct || highPct <= 0 || highPct > 100 {
		return 0, fmt.Errorf("image gc: thresholds high %d%% and low %d%%: want 0 <= low <= high <= 100", highPct, lowPct)
	}
	pct, err := s.usage()
	if err != nil || pct <= float64(highPct) {
		return 0, err
	}
	s.log.Info("image gc started", "used_pct", int(pct), "high_pct", highPct, "low_pct", lowPct)
	freed, err = s.removeUnused(ctx, inUse, func() (bool, error) {
		pct, err := s.usage()
		return pct >= float64(lowPct), err
	})
	s.log.Info("image gc done", "freed_bytes", freed)
	return freed, err
}

// usedPct is how full the filesystem under Root is, as df counts it: the
// blocks reserved for root count as neither used nor available.
func (s *Store) usedPct() (float64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("image gc: %s: %w", s.root, err)
	}
	used := st.Blocks - st.Bfree
	if used+st.Bavail == 0 {
		return 0, nil
	}
	return 100 * float64(used) / float64(used+st.Bavail), nil
}
