// Command chaos runs disruptive tests against `peapod agent`: churn while
// the agent is killed with SIGKILL, hostile manifests, a create/delete
// soak, and faults (shim kills, a full or read-only root or state dir).
// Each mode runs its own agent on its own bridge, pod CIDR, cgroup parent
// and temp dirs, and ends with a leak check. Run it through
// hack/chaos/run.sh, as root.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	long        bool
	seed        uint64
	peapod      string // the binary under test
	rootfs      string // a busybox rootfs (hack/mkrootfs.sh)
	work        string // this run's temp dir
	id          string // unique to this run: in bridge and cgroup names
	portBase    int    // first host port of this run's hostPort pods
	keep        bool
	modes       []string
	verbose     bool
	maxAgentRSS int64 // bytes: the agent's memory high-water mark may not pass it
}

// mode is one disruptive test; it returns figures for the report.
type mode struct {
	name string
	run  func(ctx context.Context, o *options, rng *rand.Rand, a *testAgent) (figures, error)
	// prepare runs before the agent starts and returns the mount points
	// it made (the leak check ignores them; teardown removes them).
	prepare func(a *testAgent) ([]string, error)
}

// figures are one mode's numbers for the report.
type figures []string

var allModes = []mode{
	{name: "churn", run: runChurn},
	{name: "hostile", run: runHostile},
	{name: "soak", run: runSoak},
	{name: "faults", run: runFaults, prepare: mountFaultDirs},
}

func main() {
	o := &options{}
	var modes string
	flag.BoolVar(&o.long, "long", false, "the long run (minutes to an hour) instead of the short one CI runs")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of every random choice (0: pick one and print it)")
	flag.StringVar(&o.peapod, "peapod", "", "the peapod binary under test")
	flag.StringVar(&o.rootfs, "rootfs", "", "busybox root filesystem for the pods (hack/mkrootfs.sh)")
	flag.StringVar(&modes, "modes", "churn,hostile,soak,faults", "modes to run (always in the order churn, hostile, soak, faults)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (agent logs) even when every mode passed")
	flag.BoolVar(&o.verbose, "v", false, "log each step")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("chaos: ")
	if o.peapod == "" || o.rootfs == "" {
		log.Fatal("--peapod and --rootfs are required (hack/chaos/run.sh passes them)")
	}
	if os.Geteuid() != 0 {
		log.Fatal("run as root: the agent creates namespaces, mounts, cgroups and links")
	}
	if o.seed == 0 {
		var b [4]byte
		crand.Read(b[:])
		o.seed = 1 + (uint64(b[0])<<16|uint64(b[1])<<8|uint64(b[2]))%999999
	}
	o.maxAgentRSS = 512 << 20
	var idb [2]byte
	crand.Read(idb[:])
	o.id = hex.EncodeToString(idb[:])
	o.portBase = 30000 + 10*(int(idb[0])<<8|int(idb[1]))%20000
	for _, m := range strings.Split(modes, ",") {
		if !slices.ContainsFunc(allModes, func(x mode) bool { return x.name == m }) {
			log.Fatalf("unknown mode %q", m)
		}
		o.modes = append(o.modes, m)
	}
	length := "short"
	if o.long {
		length = "long"
	}
	var err error
	if o.work, err = os.MkdirTemp("", "peapod-chaos-"+o.id+"-"); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s run, seed %d (rerun the same choices with --seed %d), modes %s, work dir %s", length, o.seed, o.seed, strings.Join(o.modes, ","), o.work)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

func run(ctx context.Context, o *options) int {
	start := time.Now()
	var failed []string
	var report []string
	for i, m := range allModes {
		if !slices.Contains(o.modes, m.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		// Each mode has its own generator from the seed, so that running
		// one mode alone makes the same choices as in a full run.
		rng := rand.New(rand.NewPCG(o.seed, uint64(i+1)))
		figs, err := runMode(ctx, o, m, i, rng)
		status := "PASS"
		if err != nil {
			status = "FAIL"
			failed = append(failed, m.name)
			log.Printf("FAIL %s: %v", m.name, err)
		}
		line := fmt.Sprintf("%s %-8s %6.1fs  %s", status, m.name, time.Since(t0).Seconds(), strings.Join(figs, ", "))
		log.Print(line)
		report = append(report, line)
	}
	fmt.Printf("\nchaos summary (seed %d, %.0fs):\n  %s\n", o.seed, time.Since(start).Seconds(), strings.Join(report, "\n  "))
	if ctx.Err() != nil {
		fmt.Println("interrupted: cleaned up")
		failed = append(failed, "interrupted")
	}
	if len(failed) > 0 || o.keep {
		fmt.Printf("agent logs kept in %s/*/agent.log\n", o.work)
	} else {
		os.RemoveAll(o.work)
	}
	if len(failed) > 0 {
		fmt.Printf("FAILED: %s (rerun with --seed %d)\n", strings.Join(failed, ", "), o.seed)
		return 1
	}
	return 0
}

// runMode runs one mode on a fresh agent, then its leak check, and
// always tears the agent down.
func runMode(ctx context.Context, o *options, m mode, idx int, rng *rand.Rand) (figs figures, err error) {
	a, err := newTestAgent(o, m.name, idx)
	if err != nil {
		return nil, err
	}
	log.Printf("%s: %v", m.name, a)
	var ignore []string
	defer func() {
		if terr := a.teardown(); terr != nil && err == nil {
			err = terr
		}
		// The mode's own mounts go now; any other is a leak.
		if n := unmountUnder(a.dir); n > len(ignore) && err == nil {
			err = fmt.Errorf("%d mounts left under %s after teardown (detached)", n-len(ignore), a.dir)
		}
		if err == nil && !o.keep {
			os.RemoveAll(a.dir)
		}
	}()
	if m.prepare != nil {
		if ignore, err = m.prepare(a); err != nil {
			return nil, err
		}
	}
	if err := a.start(ctx); err != nil {
		return nil, err
	}
	if err := a.recordBaseline(ctx, ignore); err != nil {
		return nil, err
	}
	figs, err = m.run(ctx, o, rng, a)
	if ctx.Err() != nil {
		return figs, ctx.Err()
	}
	// The leak check runs after a failed mode too: a failure mid-way is
	// where leaks hide. Only a crashed agent makes it pointless.
	if aerr := a.alive(); aerr != nil {
		return figs, errors.Join(err, aerr)
	}
	if pid := a.pid(); pid > 0 {
		_, hwm, _ := memory(pid)
		figs = append(figs, fmt.Sprintf("agent peak RSS %d MiB", hwm>>20))
	}
	figs = append(figs, fmt.Sprintf("agent starts %d, kill -9s %d", a.starts, a.kills))
	summary, lerr := a.leakCheck(ctx, ignore)
	if lerr != nil {
		return figs, errors.Join(err, lerr)
	}
	log.Printf("%s: %s", m.name, summary)
	figs = append(figs, "no leak")
	return figs, err
}

// vlogf logs when -v is given.
func (o *options) vlogf(format string, args ...any) {
	if o.verbose {
		log.Printf(format, args...)
	}
}
