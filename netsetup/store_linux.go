package netsetup

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
)

const (
	lockFile   = ".lock"
	tempPrefix = ".tmp-"
)

// diskStore is a leaseStore that keeps one file per lease in a directory: the
// file is named after the address and holds the UID of the pod.
//
// A lease is made by writing the UID to a temporary file and hard-linking it
// to the address's name: link(2) fails with EEXIST if the name exists, so a
// lease appears whole or not at all, and two holders can never get the same
// address even without the lock. A process killed between the two steps
// leaves only a temporary file, which the next lock holder removes. Scans are
// serialized with flock(2) on a lock file, so several processes may share
// the directory.
//
// The directory is meant to live on a tmpfs (/run), where leases vanish
// with the pods at reboot; files are not fsynced.
type diskStore struct {
	dir string
}

// newDiskStore returns a store keeping its leases in dir, which it creates.
func newDiskStore(dir string) (*diskStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create lease directory: %w", err)
	}
	return &diskStore{dir: dir}, nil
}

// Lock takes the directory's flock.
func (s *diskStore) Lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the only fd drops the flock
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Leases reads every lease file. An empty lease file still counts as a
// lease, held by the empty UID, so its address is never handed out twice;
// garbage collection removes it as no live pod has that UID.
//
// It also removes the temporary files of leases half-made by a process
// that died: every Reserve runs under the lock, so a temporary file seen by
// the lock holder is garbage.
func (s *diskStore) Leases() (map[netip.Addr]types.UID, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	leases := make(map[netip.Addr]types.UID, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(s.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			continue
		}
		addr, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // the lock file
		}
		uid, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		leases[addr] = types.UID(strings.TrimSpace(string(uid)))
	}
	return leases, nil
}

// Reserve leases addr to uid.
func (s *diskStore) Reserve(addr netip.Addr, uid types.UID) error {
	tmp, err := os.CreateTemp(s.dir, tempPrefix)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(string(uid) + "\n")
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	err = os.Link(tmp.Name(), filepath.Join(s.dir, addr.String()))
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", addr, errLeased)
	}
	return err
}

// Release removes the lease of addr.
func (s *diskStore) Release(addr netip.Addr) error {
	err := os.Remove(filepath.Join(s.dir, addr.String()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
