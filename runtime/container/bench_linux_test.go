package container

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/peapod/peapod/runtime/userns"
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

// BenchmarkMountRootfsLayers measures the rootfs step alone (idmapped
// clones and the overlay) on 1, 5 and 20 layers, lowerdir+ and, as before
// Linux 6.8, mount(2) through attached layers.
func BenchmarkMountRootfsLayers(b *testing.B) {
	pod := newTestPod(b, "bench-mount")
	holder := exec.Command("sleep", "1000")
	holder.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(pod.hostID), Size: userns.RangeSize}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(pod.hostID), Size: userns.RangeSize}},
	}
	if err := holder.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
	})
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	for _, n := range []int{1, 5, 20} {
		layers := []string{testRootfs}
		for range n - 1 {
			layers = append(layers, b.TempDir())
		}
		spec := &Spec{ID: b.Name(), Lower: layers, Dir: b.TempDir(), UserNS: &IDMap{HostID: pod.hostID, Size: userns.RangeSize}}
		upper, work, err := prepareUpper(spec)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("lowerdir+/layers=%d", n), func(b *testing.B) {
			for b.Loop() {
				f, err := mountRootfs(spec, upper, work, ns)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
		b.Run(fmt.Sprintf("mount(2)/layers=%d", n), func(b *testing.B) {
			for b.Loop() {
				lowers, err := openLowers(spec.Lower, ns)
				if err != nil {
					b.Fatal(err)
				}
				f, err := mountByPath(lowers, spec.Dir, upper, work)
				closeAll(lowers)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
