package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/netsetup"
	"github.com/peapod/peapod/runtime"
	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/userns"
)

// Run runs the agent with the Linux runtime, pod networking and cgroups
// until ctx is done. Pods keep running after it returns: a restarted agent
// adopts them.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// First: it takes the notify protocol's variables out of the
	// environment that shims and containers inherit.
	notify := newNotifier(log)
	lock, err := prepareDirs(cfg)
	if err != nil {
		return err
	}
	defer lock.Close()

	net, err := newNetwork(ctx, cfg, log)
	if err != nil {
		return err
	}
	cgOpts := cgroups.Options{Parent: cfg.CgroupParent, PodPidsLimit: cfg.PodPidsLimit, Log: log}
	cg, err := cgroups.New(cgOpts)
	if err != nil {
		return fmt.Errorf("set up cgroups: %w", err)
	}
	ids, _ := userns.ParseRange(cfg.UsernsRange) // checked by Validate
	registry := newRegistry()
	store, err := image.Open(image.Options{
		Root:               filepath.Join(cfg.Root, "images"),
		InsecureRegistries: cfg.InsecureRegistries,
		Mirrors:            cfg.RegistryMirrors,
		AuthFile:           cfg.RegistryAuthFile,
		Log:                log,
		Metrics:            registry,
	})
	if err != nil {
		return err
	}
	defer store.Close()
	images := runtime.Images{Store: store}
	rt, err := runtime.New(runtime.Options{
		StateDir:    cfg.State,
		RootDir:     cfg.Root,
		LogDir:      cfg.LogDir,
		UsernsRange: ids,
		Cgroups:     &cgOpts,
		ResolvConf:  podResolvConf,
		Images:      images,
		Log:         log,

		NoSeccompDefault: !cfg.SeccompDefault,
	})
	if err != nil {
		return fmt.Errorf("start the runtime: %w", err)
	}
	defer rt.Close()
	logHost(log, cfg, cg.Mode())

	// The network state of pods that vanished while no agent ran (a
	// reboot empties --state, a crash may leave a lease) goes before any
	// pod is set up; later rounds run beside the controller.
	gnet := &guardedNetwork{net: net, rt: rt, keeper: net}
	if err := gnet.collect(ctx); err != nil {
		log.Warn("network garbage collection", "err", err)
	}
	return run(ctx, cfg, log, parts{
		runtime:  rt,
		disk:     rt,
		exec:     runtime.ActionExecer{Runtime: rt},
		network:  gnet,
		netGC:    gnet,
		images:   images,
		imageGC:  &imageGC{images: images, users: rt, high: cfg.ImageGCHighThreshold, low: cfg.ImageGCLowThreshold},
		registry: registry,
		metrics:  &targets{cgroups: cg, netns: rt.NetNSPath},
		notifier: notify,
	})
}

// logHost says, in one line, what the kernel offers and how the agent
// adapts, so a user's bug report carries it.
func logHost(log *slog.Logger, cfg Config, cgroupMode string) {
	var u unix.Utsname
	_ = unix.Uname(&u)
	f := container.ProbeFeatures()
	log.Info("host", "kernel", unix.ByteSliceToString(u.Release[:]), "cgroups", cgroupMode,
		"cloneIntoCgroup", cgroupMode == cgroups.ModeV2, "overlayLowerdirFD", f.OverlayLowerdirFD,
		"idmappedMounts", f.IDMappedMounts, "bridge", cfg.Bridge, "podCIDR", cfg.PodCIDR, "usernsRange", cfg.UsernsRange)
	if !cfg.SeccompDefault {
		log.Warn("--seccomp-default=false: containers that name no seccomp profile run Unconfined")
	}
	if !f.IDMappedMounts {
		log.Warn("kernel has no idmapped mounts (Linux 5.12+): only pods with hostUsers: true can start")
	}
}

// newNetwork prepares the bridge, forwarding and the nftables table, and
// removes what pods that no longer exist left behind.
func newNetwork(ctx context.Context, cfg Config, log *slog.Logger) (*netsetup.Manager, error) {
	cidr, _ := netip.ParsePrefix(cfg.PodCIDR) // checked by Validate
	net, err := netsetup.New(netsetup.Options{
		Bridge:   cfg.Bridge,
		PodCIDRs: []netip.Prefix{cidr},
		MTU:      cfg.MTU,
		StateDir: cfg.State,
		Log:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("set up pod networking: %w", err)
	}
	if err := net.Ensure(ctx); err != nil {
		return nil, fmt.Errorf("set up bridge %s: %w", cfg.Bridge, err)
	}
	return net, nil
}

// podResolvConf builds a pod's resolv.conf from the host's as kubelet does,
// reading the host files at each sandbox creation so changes are picked up.
func podResolvConf(pod *corev1.Pod) []byte {
	host, _ := os.ReadFile("/etc/resolv.conf")
	upstream, _ := os.ReadFile("/run/systemd/resolve/resolv.conf")
	return netsetup.ResolvConf(pod, host, upstream)
}
