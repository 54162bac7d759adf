package container

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkStart measures Start (fork of the init stage, overlay, mounts,
// pivot, exec) of /bin/true in a pod, and reports the median.
func BenchmarkStart(b *testing.B) {
	pod := newTestPod(b, "bench-pod")
	var took []time.Duration
	for b.Loop() {
		spec := pod.spec(b, "true")
		t0 := time.Now()
		p, err := Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(t0))
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "median-start-µs")
}

// BenchmarkSealedExe measures the one-off copy of the binary into a sealed
// memfd.
func BenchmarkSealedExe(b *testing.B) {
	for b.Loop() {
		f, err := copyToSealedMemfd("/proc/self/exe")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkStartLayers measures Start of /bin/true on images of 1, 5 and
// 20 layers (the busybox rootfs under empty layers): each layer costs an
// idmapped clone and an overlay lower.
func BenchmarkStartLayers(b *testing.B) {
	pod := newTestPod(b, "bench-layers")
	for _, n := range []int{1, 5, 20} {
		layers := []string{testRootfs}
		for range n - 1 {
			layers = append(layers, b.TempDir())
		}
		b.Run(fmt.Sprintf("layers=%d", n), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				spec := pod.spec(b, "true")
				spec.Lower = layers
				t0 := time.Now()
				p, err := Start(context.Background(), spec)
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				if _, err := p.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "median-start-µs")
		})
	}
}
