package container

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peapod/peapod/runtime/seccomp"
)

// buildSysprobe builds testdata/sysprobe, static, into a directory of its
// own, to bind into containers at /probe. Without a Go toolchain (the
// guest of hack/vmtest.sh) it returns "" and the probes are left out.
func buildSysprobe(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Log("no go command: the io_uring and keyring probes are left out")
		return ""
	}
	dir := t.TempDir()
	cmd := exec.Command(goCmd, "build", "-o", filepath.Join(dir, "sysprobe"), "./testdata/sysprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build sysprobe: %v\n%s", err, out)
	}
	return dir
}

// escapeScript tries what RuntimeDefault forbids: a user namespace (in
// which the container's root would hold CAP_SYS_ADMIN and could mount),
// io_uring, the kernel keyrings; and makes a directory, which it allows.
const escapeScript = `
grep '^Seccomp:' /proc/self/status
unshare -Urm sh -c 'mount -t tmpfs none /root && echo mounted' 2>&1
mkdir /tmp/sh-dir 2>&1 && echo sh-mkdir=OK
[ -x /probe/sysprobe ] && /probe/sysprobe
true
`

// TestSeccomp runs escapeScript under each kind of profile, with and
// without no_new_privs, which changes when the filter goes on.
func TestSeccomp(t *testing.T) {
	pod := newTestPod(t, "seccomp-pod")
	probe := buildSysprobe(t)
	var cache seccomp.Cache
	def, err := cache.RuntimeDefault(DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	denyMkdir, err := cache.Localhost([]byte(`{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}`), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	confined := []string{"Seccomp:\t2\n", "Operation not permitted", "sh-mkdir=OK\n"}
	confinedProbes := []string{"io_uring_setup=EPERM\n", "add_key=EPERM\n", "keyctl=EPERM\n", "mkdirat=OK\n"}
	for _, tc := range []struct {
		name         string
		prog         *seccomp.Program
		nnp          bool
		want, probes []string
		dontWant     []string
	}{
		{"RuntimeDefault", def, false, confined, confinedProbes, []string{"mounted"}},
		{"RuntimeDefault no_new_privs", def, true, confined, confinedProbes, []string{"mounted"}},
		{"Unconfined", nil, false, []string{"Seccomp:\t0\n", "mounted\n", "sh-mkdir=OK\n"},
			[]string{"io_uring_setup=OK\n", "add_key=OK\n", "keyctl=OK\n", "mkdirat=OK\n"}, nil},
		{"Localhost denying mkdir", denyMkdir, true, []string{"Seccomp:\t2\n", "mounted\n"},
			[]string{"io_uring_setup=OK\n", "mkdirat=EPERM\n"}, []string{"sh-mkdir=OK"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := pod.spec(t, "sh", "-c", escapeScript)
			spec.Seccomp, spec.NoNewPrivileges = tc.prog, tc.nnp
			want := tc.want
			if probe != "" {
				spec.Mounts = append(spec.Mounts, Mount{Source: probe, Destination: "/probe", ReadOnly: true})
				want = append(slices.Clone(want), tc.probes...)
			}
			out := run(t, spec)
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("container output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(out, w) {
					t.Errorf("container output has %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestSeccompOrder shows where the filter goes on: without no_new_privs
// before the privileges are dropped, so a profile denying capset fails the
// start there; with it after every step of the init stage, so the same
// profile lets the container start.
func TestSeccompOrder(t *testing.T) {
	pod := newTestPod(t, "seccomp-order-pod")
	var cache seccomp.Cache
	denyCapset, err := cache.Localhost([]byte(`{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["capset"], "action": "SCMP_ACT_ERRNO"}]}`), DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	spec := pod.spec(t, "true")
	spec.Seccomp = denyCapset
	_, err = Start(context.Background(), spec)
	var initErr *InitError
	if !errors.As(err, &initErr) || !strings.Contains(err.Error(), "set capabilities: operation not permitted") {
		t.Errorf("start without no_new_privs: %v, want the init stage's capset failure", err)
	}
	spec = pod.spec(t, "true")
	spec.Seccomp, spec.NoNewPrivileges = denyCapset, true
	run(t, spec)

	// Docker's profile lets the init stage finish its steps under the
	// filter: the switch to another user included.
	def, err := cache.RuntimeDefault(DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	spec = pod.spec(t, "sh", "-c", "id -u; grep ^Seccomp: /proc/self/status")
	spec.Seccomp, spec.UID, spec.GID, spec.AdditionalGIDs = def, 1000, 1000, []uint32{44}
	if out, want := run(t, spec), "1000\nSeccomp:\t2\n"; out != want {
		t.Errorf("runAsUser 1000 under RuntimeDefault: output %q, want %q", out, want)
	}
}

// BenchmarkStartSeccomp is BenchmarkStart with the RuntimeDefault filter:
// the difference of the medians is what the filter costs a start.
func BenchmarkStartSeccomp(b *testing.B) {
	pod := newTestPod(b, "bench-seccomp-pod")
	var cache seccomp.Cache
	prog, err := cache.RuntimeDefault(DefaultCapabilities())
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for b.Loop() {
		spec := pod.spec(b, "true")
		spec.Seccomp = prog
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
