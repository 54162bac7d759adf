// Package cgroups gives pods and their containers Linux control groups, with
// the limits kubelet would set, on cgroup v1, hybrid and v2 hosts.
//
// The hierarchy is kubelet-like, without the QoS level:
//
//	<Parent>/pod<uid>              pod cgroup: sum of the containers' limits, pids limit
//	<Parent>/pod<uid>/<container>  container cgroup: the container's limits
//
// Paths derive from the pod UID and container name only, so an agent that
// restarts finds its cgroups again without keeping state. Processes live
// only in container cgroups, never in the pod cgroup or Parent (cgroup v2's
// "no internal processes" rule).
//
// Modes, detected from the files under Options.Root:
//
//   - "v2" (unified): Parent is relative to the root of the cgroup2
//     hierarchy. The memory, cpu and pids controllers are enabled in
//     cgroup.subtree_control from the root down to the pod cgroup where they
//     are not yet. Under systemd, run the agent with Delegate=yes, move it out
//     of its unit's cgroup into a leaf (the unit's cgroup may not hold
//     processes once it delegates controllers) and point Parent below the
//     unit, e.g. "system.slice/peapod.service/pods". A process joins its
//     container cgroup at clone time through Container.CgroupFD.
//   - "v1" and "hybrid": limits go to the v1 hierarchies (one directory per
//     hierarchy under Root, Parent relative to each). On a hybrid host the
//     cgroup2 hierarchy is left alone: it holds no controllers, and the v1
//     freezer already gives an atomic kill. CLONE_INTO_CGROUP cannot reach
//     v1 hierarchies, so a process joins its cgroups once started, before it
//     runs anything of the container's, through Container.PlaceProcess.
package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// Modes reported by Manager.Mode.
const (
	ModeV1     = "v1"
	ModeHybrid = "hybrid"
	ModeV2     = "v2"
)

// Options configures a Manager. The zero value is usable.
type Options struct {
	// Root is where the cgroup filesystems are mounted; "/sys/fs/cgroup" if empty.
	Root string
	// Parent is the cgroup under which pods are created, relative to the
	// root of each hierarchy; "peapod" if empty.
	Parent string
	// PodPidsLimit is each pod's pids.max: 0 means DefaultPodPidsLimit,
	// -1 means no limit.
	PodPidsLimit int64
	// Log receives a line per stale pod cgroup GC removes; nil discards them.
	Log *slog.Logger
}

// Manager creates and finds pod cgroups. It is safe for concurrent use by
// different pods; calls for the same pod must not overlap.
type Manager struct {
	mode      string
	parent    string // cleaned, relative, e.g. "peapod"
	pidsLimit int64
	log       *slog.Logger
	backend   backend
}

// backend is the cgroup-version-specific part of the Manager.
type backend interface {
	// group returns a handle on the cgroup at rel (relative to the
	// hierarchy roots, e.g. "peapod/pod1/c"); it does not create it.
	group(rel string) group
	// setup creates rel and its ancestors and makes them ready for
	// children (v2: enables controllers) without setting limits.
	setup(rel string) error
	// children lists the names of the sub-cgroups of rel that exist.
	children(rel string) ([]string, error)
}

// group is one cgroup (in every v1 hierarchy, or in the unified one).
type group interface {
	set(l limits) error
	stats() (*Stats, error)
	oomKills() (uint64, error)
	kill() error
	remove() error
	// place moves a running process into the group (cgroup.procs).
	place(pid int) error
	// openFD opens the group's cgroup2 directory for CLONE_INTO_CGROUP;
	// nil on v1.
	openFD() (*os.File, error)
}

// New detects the cgroup mode under opts.Root and returns a Manager. It
// creates nothing.
func New(opts Options) (*Manager, error) {
	if opts.Root == "" {
		opts.Root = "/sys/fs/cgroup"
	}
	if opts.Parent == "" {
		opts.Parent = "peapod"
	}
	parent := path.Clean(opts.Parent)
	if path.IsAbs(parent) || parent == "." || parent == ".." || strings.HasPrefix(parent, "../") {
		return nil, fmt.Errorf("cgroup parent %q: must be a path below the hierarchy root, like \"peapod\"", opts.Parent)
	}
	switch {
	case opts.PodPidsLimit == 0:
		opts.PodPidsLimit = DefaultPodPidsLimit
	case opts.PodPidsLimit < -1:
		return nil, fmt.Errorf("pod pids limit %d: must be positive, or -1 for no limit", opts.PodPidsLimit)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	mode, err := detectMode(opts.Root)
	if err != nil {
		return nil, err
	}
	m := &Manager{mode: mode, parent: parent, pidsLimit: opts.PodPidsLimit, log: opts.Log}
	if mode == ModeV2 {
		m.backend = &v2{root: opts.Root}
	} else if m.backend, err = newV1(opts.Root); err != nil {
		return nil, err
	}
	return m, nil
}

// detectMode tells the cgroup layout under root from the files the kernel
// puts there: only a cgroup2 root has cgroup.controllers.
func detectMode(root string) (string, error) {
	if exists(filepath.Join(root, "cgroup.controllers")) {
		return ModeV2, nil
	}
	if !exists(filepath.Join(root, "memory")) {
		return "", fmt.Errorf("detect cgroup mode: %s holds neither a cgroup2 hierarchy nor a v1 memory hierarchy", root)
	}
	if exists(filepath.Join(root, "unified", "cgroup.controllers")) {
		return ModeHybrid, nil
	}
	return ModeV1, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Mode returns ModeV1, ModeHybrid or ModeV2.
func (m *Manager) Mode() string { return m.mode }

// GC kills and removes the pod cgroups under Parent whose UID is not in
// live: pods of an earlier agent run that no longer exist. It keeps going
// past a failure and returns them all.
func (m *Manager) GC(live map[types.UID]bool) error {
	names, err := m.backend.children(m.parent)
	if err != nil {
		return fmt.Errorf("list pod cgroups: %w", err)
	}
	var errs []error
	for _, name := range names {
		uid, ok := strings.CutPrefix(name, "pod")
		if !ok || live[types.UID(uid)] {
			continue
		}
		m.log.Info("removing stale pod cgroup", "cgroup", m.pod(types.UID(uid)).Path())
		errs = append(errs, m.RemovePod(types.UID(uid)))
	}
	return errors.Join(errs...)
}

// readDirNames lists the sub-directories of dir; a missing dir has none.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
