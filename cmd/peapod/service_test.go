package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServiceUnitVerifies runs systemd-analyze verify on peapod.service,
// pointed at the binary under test. systemd-analyze exits 0 even when it
// reports a problem, so any line it prints fails the test, except the one
// about the bus on a host where systemd is not PID 1.
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	unit, err := os.ReadFile("../../peapod.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/peapod agent\n") {
		t.Fatalf("peapod.service: no ExecStart=/usr/local/bin/peapod agent line")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "peapod.service")
	patched := strings.Replace(string(unit), "ExecStart=/usr/local/bin/peapod", "ExecStart="+peapodBin, 1)
	if err := os.WriteFile(path, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(analyze, "verify", path).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "Failed to connect to bus") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	for _, want := range []string{"Type=notify", "NotifyAccess=main", "WatchdogSec=", "KillMode=process", "Delegate=yes", "Restart=on-failure"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("peapod.service lacks %s", want)
		}
	}
}

// TestPrintConfig checks --print-config: the defaults, overridden by the
// config file, overridden by flags, and a refused unknown key.
func TestPrintConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("bridge: br-file\npod-cidr: 10.77.0.0/16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runPeapod(t, "agent", "--config", file, "--pod-cidr", "10.78.0.0/16", "--print-config")
	for _, want := range []string{"bridge: br-file\n", "pod-cidr: 10.78.0.0/16\n", "state: /run/peapod\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("peapod agent --print-config: exit %d, want %q in:\n%s", code, want, out)
		}
	}
	if err := os.WriteFile(file, []byte("bridgee: br0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = runPeapod(t, "agent", "--config", file, "--print-config")
	if code == 0 || !strings.Contains(out, file) || !strings.Contains(out, `unknown field "bridgee"`) {
		t.Errorf("an unknown key: exit %d, want an error naming the file and the key:\n%s", code, out)
	}
}
