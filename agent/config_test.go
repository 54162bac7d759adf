package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func parseConfig(t *testing.T, file string, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	flags := DefaultConfig()
	flags.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return LoadConfig(path, fs, &flags)
}

func TestLoadConfigPrecedence(t *testing.T) {
	got, err := parseConfig(t, "manifests: /srv/pods\nlog-format: json\nstate: /run/p\n", "--state", "/run/flag", "--log-dir=/logs")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Manifests = "/srv/pods" // from the file
	want.LogFormat = "json"      // from the file
	want.State = "/run/flag"     // the flag beats the file
	want.LogDir = "/logs"        // flag only
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigAllowedUnsafeSysctls(t *testing.T) {
	got, err := parseConfig(t, "allowed-unsafe-sysctls: [kernel.msgmax]\n", "--allowed-unsafe-sysctls", "net.core.*,kernel.shm*")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"net.core.*", "kernel.shm*"}, got.AllowedUnsafeSysctls); diff != "" {
		t.Errorf("the flag does not win (-want +got):\n%s", diff)
	}
	got, err = parseConfig(t, "allowed-unsafe-sysctls: [kernel.msgmax]\n")
	if err != nil || !cmp.Equal([]string{"kernel.msgmax"}, got.AllowedUnsafeSysctls) {
		t.Errorf("from the file: %q, %v", got.AllowedUnsafeSysctls, err)
	}
}

// TestLoadConfigImages: the repeatable registry flags, from the file and
// the command line.
func TestLoadConfigImages(t *testing.T) {
	got, err := parseConfig(t, "insecure-registry: [registry.lan:5000]\nregistry-mirror: [https://mirror.gcr.io]\nimage-gc-low-threshold: 60\n",
		"--insecure-registry", "10.0.0.5", "--insecure-registry", "[fd00::5]:5000", "--image-gc-high-threshold=90")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.InsecureRegistries = []string{"10.0.0.5", "[fd00::5]:5000"} // the flags replace the file's list
	want.RegistryMirrors = []string{"https://mirror.gcr.io"}
	want.ImageGCHighThreshold, want.ImageGCLowThreshold = 90, 60
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigDefaultsWithoutFile(t *testing.T) {
	got, err := parseConfig(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(DefaultConfig(), got); diff != "" {
		t.Errorf("config mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		want       []string
	}{
		{name: "unknown key", file: "manifest: /x\n", want: []string{`unknown field "manifest"`}},
		{name: "relative dir", args: []string{"--root", "var/lib"}, want: []string{`--root "var/lib": must be an absolute path`}},
		{name: "bad format and level", args: []string{"--log-format", "xml", "--log-level", "loud"},
			want: []string{"--log-format \"xml\"", "--log-level \"loud\""}},
		{name: "bad metrics address", args: []string{"--metrics-addr", "10265"}, want: []string{"--metrics-addr"}},
		{name: "host sysctl allowed", args: []string{"--allowed-unsafe-sysctls", "net.core.*,kernel.panic"},
			want: []string{`--allowed-unsafe-sysctls: allowed unsafe sysctl "kernel.panic": not a sysctl of the pod's network or IPC namespace`}},
		{name: "bad registries", args: []string{"--insecure-registry", "http://r:5000", "--insecure-registry", "r/x", "--registry-mirror", "http://mirror.gcr.io"},
			want: []string{`insecure registry "http://r:5000"`, `insecure registry "r/x"`, `registry mirror "http://mirror.gcr.io"`}},
		{name: "relative auth file", file: "registry-auth-file: auth.json\n", want: []string{"--registry-auth-file"}},
		{name: "gc thresholds", args: []string{"--image-gc-high-threshold", "70", "--image-gc-low-threshold", "75"},
			want: []string{"--image-gc-low-threshold 75: must not exceed --image-gc-high-threshold 70"}},
		{name: "gc threshold range", args: []string{"--image-gc-high-threshold", "101"}, want: []string{"from 0 to 100"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(t, tc.file, tc.args...)
			if err == nil {
				t.Fatal("LoadConfig succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigSeccompDefault(t *testing.T) {
	for _, tc := range []struct {
		file string
		args []string
		want bool
	}{
		{"", nil, true},
		{"", []string{"--seccomp-default=false"}, false},
		{"seccomp-default: false\n", nil, false},
		{"seccomp-default: false\n", []string{"--seccomp-default"}, true},
	} {
		got, err := parseConfig(t, tc.file, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if got.SeccompDefault != tc.want {
			t.Errorf("file %q, flags %v: SeccompDefault = %v, want %v", tc.file, tc.args, got.SeccompDefault, tc.want)
		}
	}
}
