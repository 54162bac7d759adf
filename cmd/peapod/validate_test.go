package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - {name: web, image: "rootfs:/var/lib/peapod/rootfs/busybox", command: [sleep, "1000"]}
`)
	typo := write("typo.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  contianers:
  - {name: web, image: "rootfs:/x"}
`)
	deploy := write("deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
	hostEtc := write("host-etc.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes: [{name: etc, hostPath: {path: /etc}}]
  containers:
  - {name: web, image: "rootfs:/x", volumeMounts: [{name: etc, mountPath: /host-etc}]}
`)
	somaxconn := write("somaxconn.yaml", `apiVersion: v1
kind: Pod
metadata: {name: tuned}
spec:
  securityContext: {sysctls: [{name: net.core.somaxconn, value: "1024"}]}
  containers:
  - {name: web, image: "rootfs:/x", command: [sleep, "1000"]}
`)

	// A manifest directory with the same pod in two files.
	podDir := filepath.Join(dir, "pods")
	if err := os.Mkdir(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(podDir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name     string
		files    []string
		wantCode int
		want     []string
	}{
		{"good", []string{good}, 0, []string{"good.yaml: pod default/web ok"}},
		{"unknown field", []string{typo}, 1, []string{"typo.yaml", "spec.contianers"}},
		{"unsupported kind", []string{deploy}, 1, []string{"deploy.yaml", "unsupported kind Deployment"}},
		{"one bad among good", []string{good, typo}, 1, []string{"pod default/web ok", "spec.contianers"}},
		{"writable hostPath of /etc warns", []string{hostEtc}, 0, []string{
			"host-etc.yaml: warning: spec.containers[0].volumeMounts[0]: mounts host directory /etc writable", "pod default/web ok"}},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
		{"same pod in two files", []string{good, hostEtc}, 1, []string{
			"good.yaml: pod default/web ok", "host-etc.yaml: pod default/web is already defined in " + good}},
		{"a directory, as the agent reads it", []string{podDir}, 1, []string{
			"a.yaml: pod default/web ok", "b.yaml: pod default/web is already defined in a.yaml"}},
		{"unsafe sysctl", []string{somaxconn}, 1, []string{`unsafe sysctl "net.core.somaxconn" is not allowed`}},
		{"allowed unsafe sysctl", []string{"--allowed-unsafe-sysctls", "net.core.*", somaxconn}, 0, []string{"pod default/tuned ok"}},
		{"host sysctl allowed", []string{"--allowed-unsafe-sysctls", "kernel.panic", somaxconn}, 1,
			[]string{`--allowed-unsafe-sysctls: allowed unsafe sysctl "kernel.panic"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runPeapod(t, append([]string{"validate"}, tc.files...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	out, code := runPeapod(t, "version")
	if code != 0 || !strings.HasPrefix(out, "peapod ") {
		t.Errorf("peapod version = %q (exit %d)", out, code)
	}
}
