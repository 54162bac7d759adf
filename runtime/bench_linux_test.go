package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRootPod measures, per pod: CreateSandbox, StartContainer of a
// busybox container, the shim's memory with that container running, and
// RemovePod. Run with -benchtime 20x for medians over 20 pods.
func BenchmarkRootPod(b *testing.B) {
	env := newTestEnv(b)
	r := env.runtime(b)
	ctx := context.Background()
	var create, startT, remove []time.Duration
	var rss, pss []float64
	for i := 0; b.Loop(); i++ {
		pod := newPod(fmt.Sprintf("bench%d", i), shellContainer("app", "sleep 1000"))
		t0 := time.Now()
		if _, err := r.CreateSandbox(ctx, pod); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		start(b, r, pod.UID, "app", 0)
		t2 := time.Now()
		kRSS, kPSS := smapsRollup(b, shimPID(b, r, pod.UID))
		t3 := time.Now()
		if err := r.RemovePod(ctx, pod.UID, 0); err != nil {
			b.Fatal(err)
		}
		create = append(create, t1.Sub(t0))
		startT = append(startT, t2.Sub(t1))
		remove = append(remove, time.Since(t3))
		rss, pss = append(rss, kRSS), append(pss, kPSS)
	}
	b.ReportMetric(ms(median(create)), "create-ms")
	b.ReportMetric(ms(median(startT)), "start-ms")
	b.ReportMetric(ms(median(remove)), "remove-ms")
	b.ReportMetric(median(rss), "shim-rss-KiB")
	b.ReportMetric(median(pss), "shim-pss-KiB")
}

func median[T time.Duration | float64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// smapsRollup returns a process's RSS and PSS in KiB.
func smapsRollup(b testing.TB, pid int) (rss, pss float64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss
}
