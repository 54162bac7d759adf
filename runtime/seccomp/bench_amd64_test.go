package seccomp

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkCompileRuntimeDefault measures what the cache saves: resolving
// and compiling docker's profile, once per capability set.
func BenchmarkCompileRuntimeDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Compile(DefaultProfile(), defaultCaps); err != nil {
			b.Fatal(err)
		}
	}
	p, _ := Compile(DefaultProfile(), defaultCaps)
	b.ReportMetric(float64(p.Len()), "instructions")
}

// BenchmarkInstall measures what every container start pays in its init
// stage: loading the program. Each round installs it on a fresh thread
// (no_new_privs, so no root needed) that ends with its goroutine, so the
// filters never reach the test's other threads.
func BenchmarkInstall(b *testing.B) {
	p, err := Compile(DefaultProfile(), defaultCaps)
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error)
	var took []time.Duration
	for b.Loop() {
		go func() {
			// Never unlocked: Go ends the thread with the goroutine.
			runtime.LockOSThread()
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				errc <- err
				return
			}
			t0 := time.Now()
			err := p.Install()
			took = append(took, time.Since(t0))
			errc <- err
		}()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Nanoseconds())/1000, "median-install-µs")
}
