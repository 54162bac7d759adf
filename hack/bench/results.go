package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results holds every sample of a run; the table is computed from it.
type results struct {
	Started     time.Time                       `json:"started"`
	Machine     map[string]string               `json:"machine"`
	Options     map[string]any                  `json:"options"`
	Systems     []string                        `json:"systems"`
	Unavailable map[string]string               `json:"unavailable,omitempty"`
	Samples     map[string]map[string][]float64 `json:"samples"` // system → metric → values (ms, bytes, count)
	Baseline    map[string]map[string]int       `json:"residue_baseline"`
	Detector    map[string]float64              `json:"detector"`
	Leftovers   []string                        `json:"leftovers,omitempty"`
	Table       []row                           `json:"table"`
	scan        *scanStats
}

type row struct {
	Label  string             `json:"label"`
	Values map[string]float64 `json:"values"` // system → figure; absent when not measured
	Ratios map[string]float64 `json:"ratios"` // "peapod/podman", "peapod/floor"
}

func newResults(o options, systems []system, unavailable map[string]string) *results {
	r := &results{
		Started:     time.Now().UTC(),
		Machine:     machineInfo(o.work),
		Options:     map[string]any{"quick": o.quick, "runs": o.runs, "pods": o.bulk, "bulk_reps": o.bulkReps, "idle": o.idle.String(), "scrape_pods": o.scrape},
		Unavailable: unavailable,
		Samples:     map[string]map[string][]float64{},
		Baseline:    map[string]map[string]int{},
		scan:        &scanStats{},
	}
	for _, s := range systems {
		r.Systems = append(r.Systems, s.name())
		r.Samples[s.name()] = map[string][]float64{}
	}
	return r
}

func machineInfo(work string) map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU()), "work_fs": workFS(work)}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if out, err := exec.Command("podman", "--version").Output(); err == nil {
		m["podman"] = strings.TrimSpace(string(out))
	}
	return m
}

func (r *results) add(sys, metric string, d time.Duration) {
	r.addValue(sys, metric, float64(d.Microseconds())/1000)
}

func (r *results) addValue(sys, metric string, v float64) {
	r.Samples[sys][metric] = append(r.Samples[sys][metric], v)
}

// quantile returns the q-quantile (nearest rank) of v, NaN if empty.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// tableSpec lists the rows: label, metric, quantile, divisor for the unit.
var tableSpec = []struct {
	label, metric string
	q, div        float64
}{
	{"start 1 pod p50 (ms)", "start_1", 0.5, 1},
	{"start 1 pod p95 (ms)", "start_1", 0.95, 1},
	{"stop 1 pod p50: processes gone (ms)", "stop_1", 0.5, 1},
	{"stop 1 pod p95: processes gone (ms)", "stop_1", 0.95, 1},
	{"stop 1 pod p50: residue gone (ms)", "clean_1", 0.5, 1},
	{"start N pods at once, median (ms)", "start_bulk", 0.5, 1},
	{"stop N pods at once: processes (ms)", "stop_bulk", 0.5, 1},
	{"stop N pods at once: residue (ms)", "clean_bulk", 0.5, 1},
	{"PSS per pod (KiB)", "pss_per_pod", 0.5, 1024},
	{"RSS per pod (KiB)", "rss_per_pod", 0.5, 1024},
	{"overhead processes (N pods)", "overhead_procs", 0.5, 1},
	{"idle CPU, N pods (ms per min)", "idle_cpu_ms_per_min", 0.5, 1},
	{"idle CPU of the agent alone (ms per min)", "idle_cpu_agent_ms_per_min", 0.5, 1},
}

func (r *results) buildTable() {
	r.Table = nil
	for _, t := range tableSpec {
		r.Table = append(r.Table, r.row(strings.ReplaceAll(t.label, "N pods", fmt.Sprintf("%v pods", r.Options["pods"])), t.metric, t.q, t.div))
	}
	for _, n := range r.Options["scrape_pods"].([]int) {
		c := n * containersPerPod
		r.Table = append(r.Table,
			r.row(fmt.Sprintf("/metrics p50, %d containers (ms)", c), fmt.Sprintf("scrape_ms_%d_containers", c), 0.5, 1),
			r.row(fmt.Sprintf("/metrics size, %d containers (KiB)", c), fmt.Sprintf("scrape_bytes_%d_containers", c), 0.5, 1024))
	}
}

func (r *results) row(label, metric string, q, div float64) row {
	rw := row{Label: label, Values: map[string]float64{}, Ratios: map[string]float64{}}
	for _, s := range r.Systems {
		if v := quantile(r.Samples[s][metric], q); !math.IsNaN(v) {
			rw.Values[s] = v / div
		}
	}
	p, ok := rw.Values["peapod"]
	for _, peer := range []string{"podman", "floor"} {
		// A ratio against (almost) nothing says nothing: leave it out.
		if d, okd := rw.Values[peer]; ok && okd && d > 1e-9 {
			rw.Ratios["peapod/"+peer] = p / d
		}
	}
	if img, oki := rw.Values["peapod-image"]; ok && oki && p > 1e-9 {
		rw.Ratios["image/rootfs"] = img / p
	}
	if nosc, okn := rw.Values["peapod-noseccomp"]; ok && okn && nosc > 1e-9 {
		rw.Ratios["seccomp on/off"] = p / nosc
	}
	return rw
}

func (r *results) save(path string) error {
	r.buildTable()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.Machine["loadavg_end"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	r.Detector = map[string]float64{"scans": float64(r.scan.n)}
	if r.scan.ev != nil {
		r.Detector["process_events"] = float64(r.scan.ev.count())
	}
	if r.scan.n > 0 {
		r.Detector["mean_scan_ms"] = float64(r.scan.total.Microseconds()) / 1000 / float64(r.scan.n)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// print writes the table as Markdown, so it can be pasted into
// docs/benchmarks.md as it is.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "machine: %d CPUs, kernel %s, load %s → %s, %s\n", runtime.NumCPU(), r.Machine["kernel"], r.Machine["loadavg_start"], r.Machine["loadavg_end"], r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "work dir (layers, volumes, logs): %s\n", r.Machine["work_fs"])
	if n, ok := r.Detector["process_events"]; ok {
		fmt.Fprintf(w, "detector: process events connector, %.0f events; %.0f /proc scans to confirm exits, %.2f ms each on average\n\n", n, r.Detector["scans"], r.Detector["mean_scan_ms"])
	} else {
		fmt.Fprintf(w, "detector: %.0f /proc scans, %.2f ms each on average\n\n", r.Detector["scans"], r.Detector["mean_scan_ms"])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	var cols []string
	for _, c := range systemNames {
		if slices.Contains(r.Systems, c) {
			cols = append(cols, c)
		}
	}
	ratios := []string{"image/rootfs", "seccomp on/off", "peapod/podman", "peapod/floor"}
	fmt.Fprintf(tw, "| figure\t %s\t %s\t\n", strings.Join(cols, "\t "), strings.Join(ratios, "\t "))
	fmt.Fprintf(tw, "|---\t%s\n", strings.Repeat("---\t", len(cols)+len(ratios)))
	for _, rw := range r.Table {
		fmt.Fprintf(tw, "| %s\t", rw.Label)
		for _, c := range cols {
			fmt.Fprintf(tw, " %s\t", num(rw.Values, c, ""))
		}
		for _, c := range ratios {
			fmt.Fprintf(tw, " %s\t", num(rw.Ratios, c, "×"))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for s, why := range r.Unavailable {
		fmt.Fprintf(w, "\n%s: not measured: %s\n", s, why)
	}
	if len(r.Leftovers) > 0 {
		fmt.Fprintf(w, "\nLEFT BEHIND on the host: %s\n", strings.Join(r.Leftovers, ", "))
	}
}

func num(m map[string]float64, k, suffix string) string {
	v, ok := m[k]
	switch {
	case !ok:
		return "–"
	case suffix == "×":
		return fmt.Sprintf("%.2f×", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// err reports a run that measured nothing for a selected system.
func (r *results) err() error {
	var errs []error
	for s, why := range r.Unavailable {
		errs = append(errs, fmt.Errorf("%s: %s", s, why))
	}
	return errors.Join(errs...)
}
