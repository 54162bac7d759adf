// Command bench measures peapod side by side with `podman kube play` and a
// "floor" (the least kernel work a pod needs), in the same run, interleaved,
// and prints one table of ratios. Run it as root through hack/bench/run.sh.
//
//	bench [--quick] [--only peapod,podman,floor] [--out FILE]
//	bench floor --dir DIR --state DIR --rootfs DIR   (the floor agent; started by bench itself)
//
// Every latency is seen from outside by one detector for all systems: the
// kernel's process events, or scans of /proc where those are missing, for
// processes whose command line carries a per-container marker (see
// detect.go and procevents.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// options are the knobs of one benchmark run.
type options struct {
	quick    bool
	only     map[string]bool
	runs     int           // single-pod start/stop iterations per system
	bulk     int           // pods dropped at once
	bulkReps int           // repetitions of the bulk step per system
	idle     time.Duration // idle CPU window
	scrape   []int         // pod counts at which /metrics is scraped
	out      string
	work     string // temp dir for everything
	run      string // tmpfs in work for the systems' runtime state (their /run)
	rootfs   string
	peapod   string // prebuilt peapod binary, or "" to build
	repo     string // module root, for building peapod
	keep     bool
}

func main() {
	if filepath.Base(os.Args[0]) == "crun" {
		// Podman's OCI runtime, through a symlink in the podman work dir.
		if err := crunWrapMain(append([]string{realCrun()}, os.Args[1:]...)); err != nil {
			fmt.Fprintln(os.Stderr, "bench crun-wrap:", err)
			os.Exit(1)
		}
	}
	if len(os.Args) > 1 && os.Args[1] == "floor" {
		if err := floorMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench floor:", err)
			os.Exit(1)
		}
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, opts); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

// systemNames are the systems a run can measure.
var systemNames = []string{"peapod", "peapod-image", "peapod-noseccomp", "podman", "floor"}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	only := fs.String("only", "", "comma-separated systems to run: "+strings.Join(systemNames, ",")+" (default: all; --quick: peapod,peapod-image,floor)")
	fs.BoolVar(&o.quick, "quick", false, "few iterations, no podman, 10 s idle window: for CI")
	fs.IntVar(&o.runs, "runs", 0, "single-pod start/stop iterations per system (default 20, quick 3)")
	fs.IntVar(&o.bulk, "pods", 0, "pods dropped at once (default 50, quick 10)")
	fs.IntVar(&o.bulkReps, "bulk-reps", 0, "repetitions of the bulk step per system (default 3, quick 1)")
	fs.DurationVar(&o.idle, "idle", 0, "idle CPU window (default 60s, quick 10s)")
	scrape := fs.String("scrape", "", "pod counts at which peapod's /metrics is scraped (default 25,100: 50 and 200 containers; quick 5)")
	fs.StringVar(&o.out, "out", "", "JSON results file (default WORK.json, beside the work directory)")
	fs.StringVar(&o.work, "work", "", "work directory (default a new temp dir)")
	fs.StringVar(&o.rootfs, "rootfs", "", "busybox rootfs built by hack/mkrootfs.sh (required)")
	fs.StringVar(&o.peapod, "peapod", "", "prebuilt peapod binary (default: build ./cmd/peapod from --repo)")
	fs.StringVar(&o.repo, "repo", ".", "peapod module root")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	def := func(p *int, full, quick int) {
		if *p == 0 {
			*p = full
			if o.quick {
				*p = quick
			}
		}
	}
	def(&o.runs, 20, 3)
	def(&o.bulk, 50, 10)
	def(&o.bulkReps, 3, 1)
	if o.idle == 0 {
		o.idle = 60 * time.Second
		if o.quick {
			o.idle = 10 * time.Second
		}
	}
	if *scrape == "" {
		*scrape = "25,100"
		if o.quick {
			*scrape = "5"
		}
	}
	for _, s := range strings.Split(*scrape, ",") {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
			return o, fmt.Errorf("--scrape %q: want positive pod counts", *scrape)
		}
		o.scrape = append(o.scrape, n)
	}
	if *only == "" {
		*only = "peapod,peapod-image,peapod-noseccomp,podman,floor"
		if o.quick {
			*only = "peapod,peapod-image,floor"
		}
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if !slices.Contains(systemNames, s) {
			return o, fmt.Errorf("--only %q: unknown system %q", *only, s)
		}
		o.only[s] = true
	}
	if o.rootfs == "" {
		return o, errors.New("--rootfs is required (hack/mkrootfs.sh DIR builds one)")
	}
	return o, nil
}

func run(ctx context.Context, log *slog.Logger, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: every system under test creates namespaces, mounts and cgroups")
	}
	var err error
	if o.rootfs, err = filepath.Abs(o.rootfs); err != nil {
		return err
	}
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "peapod-bench-"); err != nil {
			return err
		}
	}
	if o.out == "" {
		o.out = strings.TrimSuffix(o.work, "/") + ".json"
	}
	if !o.keep {
		defer func() {
			if err := removeWorkDir(o.work); err != nil {
				log.Warn("work dir left behind", "dir", o.work, "err", err)
			}
		}()
	}
	// Runtime state goes on a tmpfs, as /run is on a standard host and as
	// both peapod (--state) and podman (runroot, tmp_dir) expect by
	// default; this machine's /run is on disk.
	o.run = filepath.Join(o.work, "run")
	if err := os.MkdirAll(o.run, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", o.run, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs for runtime state: %w", err)
	}
	defer unix.Unmount(o.run, unix.MNT_DETACH)
	before := takeSnapshot(o.work)
	systems, unavailable, closeAll := openSystems(ctx, log, o)
	defer closeAll()
	if len(systems) == 0 {
		return errors.New("no system could be set up")
	}
	res := newResults(o, systems, unavailable)
	if ev, err := listenProcEvents(); err != nil {
		log.Warn("detector falls back to scanning /proc", "err", err)
	} else {
		evCtx, stop := context.WithCancel(ctx)
		defer stop()
		go ev.run(evCtx)
		res.scan.ev = ev
	}
	b := &bench{log: log, o: o, res: res, systems: systems}
	// A failed phase still prints and saves what was measured before it.
	runErr := b.all(ctx)
	closeAll()
	res.Leftovers = before.diff(takeSnapshot(o.work), o.work)
	if err := res.save(o.out); err != nil {
		return err
	}
	res.print(os.Stdout)
	fmt.Printf("\nJSON: %s\n", o.out)
	return errors.Join(runErr, res.err())
}

// openSystems sets up every selected system; a system that cannot be set up
// is logged and left out, with the reason in unavailable. closeAll tears all
// of them down and may be called more than once.
func openSystems(ctx context.Context, log *slog.Logger, o options) (systems []system, unavailable map[string]string, closeAll func()) {
	unavailable = map[string]string{}
	order := []struct {
		name string
		open func(context.Context, *slog.Logger, options) (system, error)
	}{{"peapod", openPeapod}, {"peapod-image", openPeapodImage}, {"peapod-noseccomp", openPeapodNoSeccomp}, {"podman", openPodman}, {"floor", openFloor}}
	for _, s := range order {
		if !o.only[s.name] {
			continue
		}
		sys, err := s.open(ctx, log.With("system", s.name), o)
		if err != nil {
			log.Error("system not available", "system", s.name, "err", err)
			unavailable[s.name] = err.Error()
			continue
		}
		systems = append(systems, sys)
	}
	closed := false
	return systems, unavailable, func() {
		if closed {
			return
		}
		closed = true
		for _, s := range systems {
			if err := s.close(context.WithoutCancel(ctx)); err != nil {
				log.Warn("close", "system", s.name(), "err", err)
			}
		}
	}
}
