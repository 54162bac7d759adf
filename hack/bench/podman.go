package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// podmanSystem drives `podman kube play` / `kube down` with every piece of
// its state (storage, networks, events; runroot and tmpdir on the run's
// tmpfs) in a temp dir named
// by CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, so the machine's own
// podman state is never read or written.
type podmanSystem struct {
	log      *slog.Logger
	dir      string
	run      string // runroot and tmp_dir, on the run's tmpfs
	env      []string
	network  string
	bridge   string
	files    map[string]string // first pod name → the YAML played
	mounted  []string          // cgroup v1 hierarchies this run mounted
	host     hostState         // firewall and /run state before the run
	cgBefore map[string]bool   // libpod_parent cgroups that existed before
}

const podmanImage = "localhost/pbench-busybox:1"

func openPodman(ctx context.Context, log *slog.Logger, o options) (system, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, errors.New("podman not installed (apt-get install -y podman)")
	}
	p := &podmanSystem{log: log, dir: filepath.Join(o.work, "podman"), run: filepath.Join(o.run, "podman"), files: map[string]string{}, cgBefore: map[string]bool{}}
	if err := p.writeConfig(); err != nil {
		return nil, err
	}
	for _, d := range libpodCgroups() {
		p.cgBefore[d] = true
	}
	p.host = recordHost()
	var err error
	if p.mounted, err = splitHybridControllers(); err != nil {
		return nil, err
	}
	if err := p.importImage(ctx, o.rootfs); err != nil {
		p.close(ctx)
		return nil, err
	}
	cidr, err := freeCIDR()
	if err != nil {
		p.close(ctx)
		return nil, err
	}
	p.network = fmt.Sprintf("pbench%d", os.Getpid()%10000)
	if _, err := p.podman(ctx, "network", "create", "--subnet", cidr, p.network); err != nil {
		p.close(ctx)
		return nil, err
	}
	out, err := p.podman(ctx, "network", "inspect", "--format", "{{.NetworkInterface}}", p.network)
	if err != nil {
		p.close(ctx)
		return nil, err
	}
	p.bridge = strings.TrimSpace(out)
	return p, nil
}

// writeConfig writes containers.conf and storage.conf for this run. Podman
// 4.3 on a host whose PID 1 is not systemd needs the cgroupfs manager and
// the file events logger; its OCI runtime is crun through a symlink to this
// binary (see crunwrap.go).
func (p *podmanSystem) writeConfig() error {
	for _, d := range []string{filepath.Join(p.dir, "root"), filepath.Join(p.run, "runroot"), filepath.Join(p.run, "tmp"), filepath.Join(p.dir, "networks"), filepath.Join(p.dir, "bin"), filepath.Join(p.dir, "yaml")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	crun := filepath.Join(p.dir, "bin", "crun")
	if err := os.Symlink(self, crun); err != nil {
		return err
	}
	var nofile, nproc unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%[2]d:%[2]d", "nproc=%[3]d:%[3]d"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%[1]s/events.log"
tmp_dir = "%[5]s/tmp"
static_dir = "%[1]s/root/libpod"
volume_path = "%[1]s/root/volumes"
runtime = "crun"
[engine.runtimes]
crun = ["%[4]s"]
[network]
network_backend = "netavark"
network_config_dir = "%[1]s/networks"
`, p.dir, nofile.Max, nproc.Max, crun, p.run)
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\nrunroot = \"%s/runroot\"\ngraphroot = \"%s/root\"\n", p.run, p.dir)
	p.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(p.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(p.dir, "storage.conf"))
	return errors.Join(
		os.WriteFile(filepath.Join(p.dir, "containers.conf"), []byte(conf), 0o600),
		os.WriteFile(filepath.Join(p.dir, "storage.conf"), []byte(storage), 0o600))
}

func (p *podmanSystem) podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, firstLines(string(out), 5))
	}
	return string(out), nil
}

// importImage makes the busybox image from the rootfs: no registry needed.
func (p *podmanSystem) importImage(ctx context.Context, rootfs string) error {
	tar := exec.CommandContext(ctx, "tar", "-C", rootfs, "-c", ".")
	imp := exec.CommandContext(ctx, "podman", "import", "--change", "ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin", "-", podmanImage)
	imp.Env = p.env
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	if err := tar.Start(); err != nil {
		return err
	}
	out, err := imp.CombinedOutput()
	return errors.Join(tar.Wait(), wrapOut(err, "podman import", out))
}

func wrapOut(err error, what string, out []byte) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", what, err, firstLines(string(out), 5))
}

func (p *podmanSystem) name() string { return "podman" }

// start plays all pods from one multi-document file, as a user would.
func (p *podmanSystem) start(ctx context.Context, pods []pod) error {
	var docs []string
	for _, x := range pods {
		docs = append(docs, manifest(x, podmanImage, "Never"))
	}
	file := filepath.Join(p.dir, "yaml", pods[0].name+".yaml")
	if err := os.WriteFile(file, []byte(strings.Join(docs, "---\n")), 0o600); err != nil {
		return err
	}
	p.files[pods[0].name] = file
	_, err := p.podman(ctx, "kube", "play", "--network", p.network, file)
	return err
}

func (p *podmanSystem) stop(ctx context.Context, pods []pod) error {
	file := p.files[pods[0].name]
	delete(p.files, pods[0].name)
	_, err := p.podman(ctx, "kube", "down", file)
	return err
}

// overhead is every conmon of this podman instance (its command line names
// our storage dir) and their children that are not benchmark containers:
// the infra containers' catatonit.
func (p *podmanSystem) overhead() []int {
	conmons := pidsWhere(func(_ int, exe string, argv []string) bool {
		return filepath.Base(exe) == "conmon" && strings.Contains(strings.Join(argv, " "), p.dir)
	})
	infra := pidsWhere(func(pid int, _ string, argv []string) bool {
		return slices.Contains(conmons, ppidOf(pid)) && argv[0] != "sh" && argv[0] != "/bin/sh"
	})
	return append(conmons, infra...)
}

func ppidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func (p *podmanSystem) residue() map[string]int {
	netns := 0
	e, _ := os.ReadDir("/run/netns")
	for _, x := range e {
		if strings.HasPrefix(x.Name(), "netns-") {
			netns++
		}
	}
	return map[string]int{
		"mounts":       mountsUnder(p.dir, p.run),
		"bridge ports": bridgePorts(p.bridge),
		"netns pins":   netns,
		"cgroups":      podCgroups(),
	}
}

// libpodCgroups lists the cgroups under podman's default parent, in every
// v1 hierarchy and the unified one.
func libpodCgroups() []string {
	var out []string
	for _, r := range libpodRoots() {
		filepath.WalkDir(r, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, path)
			}
			return nil
		})
	}
	return out
}

// podCgroups counts the pod cgroups under libpod_parent in the hierarchies
// podman manages. Podman 4.3 with cgroupfs never removes a pod's cgroup from
// the name=systemd and unified hierarchies (empty directories, left until
// close), so those are not counted.
func podCgroups() int {
	n := 0
	for _, d := range libpodCgroups() {
		h := strings.Split(strings.TrimPrefix(d, "/sys/fs/cgroup/"), "/")[0]
		if h != "systemd" && h != "unified" && filepath.Base(d) != "libpod_parent" {
			n++
		}
	}
	return n
}

func libpodRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
	return roots
}

// close removes every pod, container, image and network of this instance,
// then the cgroups and the v1 hierarchies the run created.
func (p *podmanSystem) close(ctx context.Context) error {
	var errs []error
	for _, args := range [][]string{
		{"pod", "rm", "-af", "-t", "0"},
		{"rm", "-af", "-t", "0"},
		{"network", "rm", "-f", p.network},
		{"rmi", "-af"},
	} {
		if args[len(args)-1] == "" {
			continue
		}
		if _, err := p.podman(ctx, args...); err != nil {
			errs = append(errs, err)
		}
	}
	// Deepest first, so parents are empty when their turn comes.
	cgs := libpodCgroups()
	slices.SortFunc(cgs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range cgs {
		if !p.cgBefore[d] {
			if err := unix.Rmdir(d); err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	for _, m := range p.mounted {
		if subdirs(m) == 0 {
			unix.Unmount(m, 0)
			os.Remove(m)
		}
	}
	errs = append(errs, p.host.restore())
	return errors.Join(errs...)
}

// splitHybridControllers mounts every controller that the unified cgroup
// hierarchy still lists as its own v1 hierarchy: crun refuses a hybrid
// layout otherwise. It returns the mount points it made.
func splitHybridControllers() ([]string, error) {
	b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	if err != nil {
		return nil, nil // not a hybrid layout
	}
	var made []string
	for _, c := range strings.Fields(string(b)) {
		dir := filepath.Join("/sys/fs/cgroup", c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return made, err
		}
		if err := unix.Mount("cgroup", dir, "cgroup", 0, c); err != nil {
			return made, fmt.Errorf("mount cgroup v1 %s (crun needs it): %w", c, err)
		}
		made = append(made, dir)
	}
	return made, nil
}
