// Package agent wires peapod's parts into the daemon: the manifest source,
// the reconcile controller, the runtime and network, the status API on a
// unix socket, and the HTTP endpoint for /metrics and /healthz.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/agent/cadvisor"
	"github.com/peapod/peapod/manifests"
	"github.com/peapod/peapod/reconcile"
)

// parts are the pieces Run assembles; tests substitute fakes for the
// runtime and the network.
type parts struct {
	runtime  reconcile.Runtime
	network  reconcile.Network
	registry *prometheus.Registry
	// metrics, when set, exports the pods' cgroup and network series.
	metrics *targets
	// netGC, when set, collects the network state of vanished pods
	// periodically, and repairs the host network if it has a keeper.
	netGC *guardedNetwork
	// notifier tells systemd (or another service manager) how the agent
	// is doing; its zero value does nothing.
	notifier *notifier
	// disk, when set, measures pods' local storage to enforce its limits.
	disk reconcile.DiskMeter
	// exec, when set, runs the exec actions of probes and hooks.
	exec reconcile.Execer
	// images makes images present before their containers start; nil
	// runs images as written.
	images reconcile.Images
	// imageGC, when set, removes unused images periodically.
	imageGC *imageGC
}

// run is the agent proper: it returns when ctx is done and every goroutine
// it started has stopped. Pods keep running: they belong to their shims.
func run(ctx context.Context, cfg Config, log *slog.Logger, p parts) error {
	name, err := nodeName(cfg.NodeName)
	if err != nil {
		return fmt.Errorf("node name (set --node-name): %w", err)
	}
	ips := newHostIPs(log)
	ctl := reconcile.New(reconcile.Options{
		Runtime: p.runtime,
		Network: p.network,
		Images:  p.images,
		Log:     log,
		Metrics: reconcile.NewMetrics(p.registry),
		Node:    node(name, ips),
		Disk:    p.disk,
		Exec:    p.exec,
	})
	errMetrics := newManifestMetrics(p.registry)
	kubelet := newKubeletEndpoints(ctl, readStateNode(name, ips))
	if p.metrics != nil {
		p.metrics.pods = ctl.Pods
		c := cadvisor.New(p.metrics, log)
		p.registry.MustRegister(c)
		kubelet.cadvisor.MustRegister(c)
		kubelet.resource.MustRegister(cadvisor.NewResource(p.metrics, log))
	}
	src := manifests.NewSource(manifests.SourceOptions{Dir: cfg.Manifests, Log: log, Policy: cfg.Policy()})

	statusL, err := listenStatus(cfg.State)
	if err != nil {
		return err
	}
	metricsL, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		statusL.Close()
		return fmt.Errorf("listen on --metrics-addr: %w", err)
	}
	log.Info("agent started", "manifests", cfg.Manifests, "state", cfg.State, "root", cfg.Root,
		"metrics", metricsL.Addr().String(), "status", statusL.Addr().String())

	g, ctx := errgroup.WithContext(ctx)
	rejected := &rejectedFiles{}
	g.Go(func() error {
		return src.Run(ctx, func(s manifests.Snapshot) {
			errMetrics.observe(s)
			rejected.observe(s)
			ctl.Update(s)
		})
	})
	g.Go(func() error { return ctl.Run(ctx) })
	if p.netGC != nil {
		g.Go(func() error { return p.netGC.collectPeriodically(ctx, log, netGCInterval) })
	}
	if p.imageGC != nil {
		g.Go(func() error { return p.imageGC.collectPeriodically(ctx, log, imageGCInterval) })
	}
	if p.netGC != nil && p.netGC.keeper != nil {
		repairs := newRepairMetrics(p.registry)
		g.Go(func() error { p.netGC.keep(ctx, log, repairs, ctl.NetworkHealthChanged); return nil })
	}
	g.Go(func() error {
		return serve(ctx, log, &http.Server{Handler: statusHandler(ctl, rejected, Info{LogDir: cfg.LogDir}), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, statusL)
	})
	g.Go(func() error {
		p.notifier.run(ctx, ctl.Ready(), ctl.Healthy, func() string { return summary(ctl, rejected) })
		return nil
	})
	g.Go(func() error {
		return serve(ctx, log, &http.Server{Handler: metricsHandler(p.registry, ctl, kubelet), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}, metricsL)
	})
	err = g.Wait()
	log.Info("agent stopped; pods keep running")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// metricsHandler serves /metrics from reg, /healthz and /readyz from
// the controller, and kubelet's paths from kubelet.
// /readyz answers 200 once the controller has adopted the pods that were
// running when the agent started (the moment systemd gets READY=1), 503
// before.
func metricsHandler(reg *prometheus.Registry, ctl controllerHealth, kubelet *kubeletEndpoints) http.Handler {
	mux := http.NewServeMux()
	kubelet.register(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := ctl.Healthy(time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-ctl.Ready():
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "adopting the pods that were running", http.StatusServiceUnavailable)
		}
	})
	return mux
}

// controllerHealth is what the health endpoints ask the controller.
type controllerHealth interface {
	Healthy(time.Time) error
	Ready() <-chan struct{}
}

// newRegistry returns a registry with the Go and process collectors, as
// every Prometheus-instrumented daemon exports them.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// prepareDirs creates the agent's directories and takes the agent lock, so
// two agents never manage the same pods. The returned file holds the lock
// until it is closed (or the process dies).
func prepareDirs(cfg Config) (*os.File, error) {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.State, 0o700}, {cfg.Root, 0o700}, {cfg.LogDir, 0o755}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("create directory: %w", err)
		}
	}
	lockPath := filepath.Join(cfg.State, "agent.lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open agent lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another peapod agent is running with --state %s", cfg.State)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return f, nil
}
