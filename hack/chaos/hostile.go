package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// hostileCase is one hostile thing dropped into the manifest directory.
type hostileCase struct {
	name string
	// make creates the files (names relative to the manifest dir).
	make func(a *testAgent) ([]string, error)
	// rejected: the file must be listed by the status API as rejected,
	// with an error containing msg (any error when msg is "").
	rejected string
	msg      string
	// orPod: the refusal may instead show on this pod's container status
	// (a waiting or terminated message containing msg), without it ever
	// running.
	orPod string
	// maxGrowth, if set, bounds how much the agent's peak memory may grow
	// during the case.
	maxGrowth int64
	// check, if set, judges the agent's pods after the case.
	check func(m map[string]corev1.Pod) error
}

// runHostile drops hostile manifests beside a running canary pod. After
// each, the agent must still run, the canary keep its UID and run, a new
// pod start (the reconcile loop still turns), the file be reported as
// rejected when it is invalid, and the agent's memory stay bounded.
func runHostile(ctx context.Context, o *options, rng *rand.Rand, a *testAgent) (figures, error) {
	if err := a.writeManifest("canary.yaml", longPod(a.image, "canary", 1, 0)); err != nil {
		return nil, err
	}
	var canaryUID string
	err := a.waitPods(ctx, 90*time.Second, "canary running", func(m map[string]corev1.Pod) error {
		canaryUID = string(m["canary"].UID)
		return allRunning(m["canary"])
	})
	if err != nil {
		return nil, err
	}
	cases := hostileCases(o, rng)
	var failures []error
	for i, c := range cases {
		o.vlogf("hostile: %s", c.name)
		_, hwm0, _ := memory(a.pid())
		files, err := c.make(a)
		if err != nil {
			return nil, fmt.Errorf("hostile case %s: make files: %w", c.name, err)
		}
		if err := checkHostile(ctx, a, c, i, canaryUID); err != nil {
			failures = append(failures, fmt.Errorf("hostile case %s: %w", c.name, err))
		}
		if _, hwm, _ := memory(a.pid()); c.maxGrowth > 0 && hwm-hwm0 > c.maxGrowth {
			failures = append(failures, fmt.Errorf("hostile case %s: the agent's peak RSS grew by %d MiB (%d → %d MiB), more than %d MiB",
				c.name, (hwm-hwm0)>>20, hwm0>>20, hwm>>20, c.maxGrowth>>20))
		}
		for _, f := range files {
			os.Remove(filepath.Join(a.manifests, f))
		}
		if err := a.alive(); err != nil {
			return nil, errors.Join(append(failures, err)...)
		}
	}
	err = poll(ctx, 30*time.Second, "no rejected file once the hostile files are gone", func() error {
		rej, err := a.rejected(ctx)
		if err != nil {
			return err
		}
		if len(rej) > 0 {
			return fmt.Errorf("still rejected: %+v", rej)
		}
		return nil
	})
	if err != nil {
		failures = append(failures, err)
	}
	_, hwm, _ := memory(a.pid())
	if hwm > o.maxAgentRSS {
		failures = append(failures, fmt.Errorf("agent peak RSS %d MiB over the %d MiB bound", hwm>>20, o.maxAgentRSS>>20))
	}
	return figures{fmt.Sprintf("%d hostile cases, %d failed", len(cases), len(failures))}, errors.Join(failures...)
}

func checkHostile(ctx context.Context, a *testAgent, c hostileCase, i int, canaryUID string) error {
	var errs []error
	if c.rejected != "" {
		path := filepath.Join(a.manifests, c.rejected)
		err := poll(ctx, 30*time.Second, c.rejected+" listed as rejected", func() error {
			if err := a.alive(); err != nil {
				return permanent(err)
			}
			rej, err := a.rejected(ctx)
			if err != nil {
				return err
			}
			if c.orPod != "" {
				m, err := a.podMap(ctx)
				if err != nil {
					return err
				}
				if p, ok := m[c.orPod]; ok {
					if allRunning(p) == nil {
						return permanent(fmt.Errorf("pod %s runs", c.orPod))
					}
					if why := waitingReasons(p); strings.Contains(why, c.msg) {
						return nil
					} else if strings.Contains(why, "Error") || strings.Contains(why, "BackOff") {
						return permanent(fmt.Errorf("pod %s refused with %q, which does not say %q", c.orPod, why, c.msg))
					}
				}
			}
			for _, r := range rej {
				if r.File == path {
					if !strings.Contains(r.Error, c.msg) {
						return permanent(fmt.Errorf("rejected with %q, which does not say %q", r.Error, c.msg))
					}
					return nil
				}
			}
			return fmt.Errorf("rejected files: %+v", rej)
		})
		errs = append(errs, err)
	}
	// A new pod starts: the loop still turns.
	probe := fmt.Sprintf("probe-%d", i)
	if err := a.writeManifest(probe+".yaml", longPod(a.image, probe, 1, 0)); err != nil {
		return err
	}
	errs = append(errs, a.waitPods(ctx, 90*time.Second, "canary and "+probe+" running", func(m map[string]corev1.Pod) error {
		if string(m["canary"].UID) != canaryUID {
			return permanent(fmt.Errorf("canary pod changed: UID %s, was %s", m["canary"].UID, canaryUID))
		}
		if err := allRunning(m["canary"]); err != nil {
			return err
		}
		if err := allRunning(m[probe]); err != nil {
			return err
		}
		if c.check != nil {
			return c.check(m)
		}
		return nil
	}))
	if err := a.removeManifest(probe + ".yaml"); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func writeFile(a *testAgent, name string, data []byte) ([]string, error) {
	return []string{name}, a.writeManifest(name, data)
}

func hostileCases(o *options, rng *rand.Rand) []hostileCase {
	huge := int64(4 << 20)
	sparse := int64(64 << 30)
	manyDocs := 4000
	// The expansion case: a value referenced n times in args. Its
	// expansion is far over the kernel's 128 KiB per argument and 2 MiB
	// (by default) for all of them, so it can never run: the agent must
	// refuse it naming the field, before allocating the expansion (issue
	// 19: unbounded $(VAR) expansion took an agent to 1.8 GB).
	// The value itself stays under the per-string limit: only its
	// expansion is too big.
	expandValue, expandRefs := 100<<10, 64
	if o.long {
		huge = 256 << 20
		manyDocs = 7000
		expandValue, expandRefs = 120<<10, 1000
	}
	return []hostileCase{
		{name: "file over the size limit", rejected: "huge.yaml", msg: "limit", make: func(a *testAgent) ([]string, error) {
			return writeFile(a, "huge.yaml", bytes.Repeat([]byte("# padding padding padding padding\n"), int(huge/34)))
		}},
		{name: "sparse 64 GiB file", rejected: "sparse.yaml", msg: "limit", make: func(a *testAgent) ([]string, error) {
			f, err := os.Create(filepath.Join(a.manifests, ".sparse.tmp"))
			if err != nil {
				return nil, err
			}
			defer f.Close()
			if err := f.Truncate(sparse); err != nil {
				return nil, err
			}
			return []string{"sparse.yaml"}, os.Rename(f.Name(), filepath.Join(a.manifests, "sparse.yaml"))
		}},
		{name: "deep flow nesting", rejected: "deep.yaml", make: func(a *testAgent) ([]string, error) {
			return writeFile(a, "deep.yaml", []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\nspec: "+strings.Repeat("[", 500000)))
		}},
		{name: "deep block nesting", rejected: "deepblock.yaml", make: func(a *testAgent) ([]string, error) {
			var b strings.Builder
			b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: deepblock}\nspec:\n")
			for i := range 1000 {
				fmt.Fprintf(&b, "%sx:\n", strings.Repeat(" ", i+1))
			}
			return writeFile(a, "deepblock.yaml", []byte(b.String()))
		}},
		{name: "binary garbage", rejected: "garbage.yaml", make: func(a *testAgent) ([]string, error) {
			b := make([]byte, 512<<10)
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			return writeFile(a, "garbage.yaml", b)
		}},
		{name: "symlink loop", rejected: "loop-a.yaml", msg: "symbolic links", make: func(a *testAgent) ([]string, error) {
			err := errors.Join(os.Symlink("loop-b.yaml", filepath.Join(a.manifests, "loop-b.yaml.tmp")),
				os.Symlink("loop-a.yaml", filepath.Join(a.manifests, "loop-a.yaml.tmp")))
			err = errors.Join(err, os.Rename(filepath.Join(a.manifests, "loop-b.yaml.tmp"), filepath.Join(a.manifests, "loop-a.yaml")),
				os.Rename(filepath.Join(a.manifests, "loop-a.yaml.tmp"), filepath.Join(a.manifests, "loop-b.yaml")))
			return []string{"loop-a.yaml", "loop-b.yaml"}, err
		}},
		{name: "FIFO", rejected: "fifo.yaml", msg: "regular file", make: func(a *testAgent) ([]string, error) {
			return []string{"fifo.yaml"}, syscall.Mkfifo(filepath.Join(a.manifests, "fifo.yaml"), 0o644)
		}},
		{name: fmt.Sprintf("%d documents, the last invalid", manyDocs), rejected: "many.yaml", make: func(a *testAgent) ([]string, error) {
			var b bytes.Buffer
			for i := range manyDocs {
				fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: many-%d}\nspec: {containers: [{name: c, image: %q}]}\n", i, a.image)
			}
			b.WriteString("---\napiVersion: v1\nkind: Pod\nmetadata: {name: many-bad}\nspec: {containers: [{name: c}]}\n")
			return writeFile(a, "many.yaml", b.Bytes())
		}, check: func(m map[string]corev1.Pod) error {
			for name := range m {
				if strings.HasPrefix(name, "many-") {
					return permanent(fmt.Errorf("pod %s runs from a rejected file", name))
				}
			}
			return nil
		}},
		{name: "100000 empty documents and one pod", make: func(a *testAgent) ([]string, error) {
			return writeFile(a, "empties.yaml", append(bytes.Repeat([]byte("---\n"), 100000), longPod(a.image, "empties", 1, 0)...))
		}, check: func(m map[string]corev1.Pod) error { return allRunning(m["empties"]) }},
		{name: "one pod in two files", rejected: "dup-b.yaml", make: func(a *testAgent) ([]string, error) {
			if _, err := writeFile(a, "dup-a.yaml", longPod(a.image, "dup", 1, 0)); err != nil {
				return nil, err
			}
			// The second file comes later: the first keeps its pod.
			time.Sleep(time.Second)
			return []string{"dup-a.yaml", "dup-b.yaml"}, a.writeManifest("dup-b.yaml", longPod(a.image, "dup", 2, 0))
		}, check: func(m map[string]corev1.Pod) error { return runningGen(m["dup"], 1) }},
		{name: "invalid UTF-8", rejected: "utf8.yaml", make: func(a *testAgent) ([]string, error) {
			pod := bytes.Replace(longPod(a.image, "utf8", 1, 0), []byte(`value: "1"`), []byte("value: \"\xff\xfe\xc3\x28\""), 1)
			return writeFile(a, "utf8.yaml", pod)
		}},
		{name: fmt.Sprintf("a %d KiB env value referenced %d times in args", expandValue>>10, expandRefs), rejected: "expand.yaml", msg: "args", orPod: "expand", maxGrowth: 16 << 20,
			make: func(a *testAgent) ([]string, error) {
				refs := strings.TrimSuffix(strings.Repeat(`"$(BIG)", `, expandRefs), ", ")
				return writeFile(a, "expand.yaml", fmt.Appendf(nil, `apiVersion: v1
kind: Pod
metadata: {name: expand}
spec:
  containers:
  - name: c
    image: %q
    command: [echo]
    args: [%s]
    env: [{name: BIG, value: %q}]
`, a.image, refs, strings.Repeat("x", expandValue)))
			}},
	}
}
