package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/peapod/peapod/manifests"
	"github.com/peapod/peapod/netsetup"
	"github.com/peapod/peapod/runtime/cgroups"
	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/userns"
)

// Config is the agent's configuration. Every field has a flag of the same
// name and a key of the same name in the --config file; a flag given on the
// command line wins over the file, and the file wins over the default.
type Config struct {
	Manifests   string `json:"manifests"`
	Root        string `json:"root"`
	State       string `json:"state"`
	LogDir      string `json:"log-dir"`
	MetricsAddr string `json:"metrics-addr"`
	LogFormat   string `json:"log-format"`
	LogLevel    string `json:"log-level"`

	Bridge               string   `json:"bridge"`
	PodCIDR              string   `json:"pod-cidr"`
	MTU                  int      `json:"mtu"`
	CgroupParent         string   `json:"cgroup-parent"`
	PodPidsLimit         int64    `json:"pod-pids-limit"`
	UsernsRange          string   `json:"userns-range"`
	NodeName             string   `json:"node-name"`
	AllowedUnsafeSysctls []string `json:"allowed-unsafe-sysctls"`

	SeccompDefault bool `json:"seccomp-default"`
	// InsecureRegistries are HOST[:PORT]s reached over plain HTTP or with
	// an unverified certificate (loopback registries always are).
	InsecureRegistries []string `json:"insecure-registry"`
	// RegistryMirrors are registries (HOST[:PORT], or https://HOST) tried
	// before Docker Hub for docker.io images.
	RegistryMirrors  []string `json:"registry-mirror"`
	RegistryAuthFile string   `json:"registry-auth-file"`
	// ImageGCHighThreshold and ImageGCLowThreshold are percentages of the
	// disk under Root: above high, unused images are removed, oldest use
	// first, until usage is below low.
	ImageGCHighThreshold int `json:"image-gc-high-threshold"`
	ImageGCLowThreshold  int `json:"image-gc-low-threshold"`
}

// Defaults for the agent's configuration.
const (
	// DefaultConfigFile is read when it exists and --config is not given.
	DefaultConfigFile  = "/etc/peapod/config.yaml"
	DefaultManifests   = "/etc/peapod/manifests"
	DefaultRoot        = "/var/lib/peapod"
	DefaultState       = "/run/peapod"
	DefaultLogDir      = "/var/log/pods"
	DefaultMetricsAddr = "127.0.0.1:10265"
	// DefaultRegistryAuthFile is root's docker login file.
	DefaultRegistryAuthFile = "/root/.docker/config.json"
)

// DefaultConfig returns the configuration used when neither a flag nor the
// config file says otherwise.
func DefaultConfig() Config {
	return Config{
		Manifests:   DefaultManifests,
		Root:        DefaultRoot,
		State:       DefaultState,
		LogDir:      DefaultLogDir,
		MetricsAddr: DefaultMetricsAddr,
		LogFormat:   "text",
		LogLevel:    "info",

		Bridge:       netsetup.DefaultBridge,
		PodCIDR:      netsetup.DefaultPodCIDR,
		CgroupParent: "peapod",
		PodPidsLimit: cgroups.DefaultPodPidsLimit,
		UsernsRange:  userns.DefaultRange.String(),

		SeccompDefault:   true,
		RegistryAuthFile: DefaultRegistryAuthFile,
		// kubelet's defaults.
		ImageGCHighThreshold: 85,
		ImageGCLowThreshold:  80,
	}
}

// BindFlags registers one flag per Config field on fs, writing into c.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Manifests, "manifests", c.Manifests, "directory of Pod manifests to run")
	fs.StringVar(&c.Root, "root", c.Root, "directory for persistent state (container upper dirs, emptyDir volumes)")
	fs.StringVar(&c.State, "state", c.State, "directory for runtime state (status socket, namespace pins, shim sockets); should be on tmpfs")
	fs.StringVar(&c.LogDir, "log-dir", c.LogDir, "directory for container logs, laid out as kubelet does")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "HOST:PORT serving /metrics and /healthz")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "agent log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "agent log level: debug, info, warn or error")
	fs.StringVar(&c.Bridge, "bridge", c.Bridge, "Linux bridge the pods' veths attach to; created if missing")
	fs.StringVar(&c.PodCIDR, "pod-cidr", c.PodCIDR, "IPv4 range pod addresses come from; the bridge gets its first address")
	fs.IntVar(&c.MTU, "mtu", c.MTU, "MTU of the bridge and pod interfaces; 0 takes the default-route interface's")
	fs.StringVar(&c.CgroupParent, "cgroup-parent", c.CgroupParent, "cgroup under which every pod gets pod<uid>/<container>")
	fs.Int64Var(&c.PodPidsLimit, "pod-pids-limit", c.PodPidsLimit, "most processes and threads one pod may have; -1 for no limit")
	fs.StringVar(&c.UsernsRange, "userns-range", c.UsernsRange, "host IDs START-END from which each pod gets a private range of 65536")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "the pods' spec.nodeName; empty means the host name")
	fs.StringSliceVar(&c.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", c.AllowedUnsafeSysctls,
		"unsafe sysctls (net.core.somaxconn) or patterns (net.core.*) that pods may set, comma-separated, as kubelet's flag")
	fs.BoolVar(&c.SeccompDefault, "seccomp-default", c.SeccompDefault, "run containers that name no seccomp profile under RuntimeDefault; false runs them Unconfined")
	fs.StringArrayVar(&c.InsecureRegistries, "insecure-registry", c.InsecureRegistries, "HOST[:PORT] of a registry reached over plain HTTP or without verifying its certificate (repeatable)")
	fs.StringArrayVar(&c.RegistryMirrors, "registry-mirror", c.RegistryMirrors, "HOST[:PORT] of a mirror tried before Docker Hub for docker.io images (repeatable)")
	fs.StringVar(&c.RegistryAuthFile, "registry-auth-file", c.RegistryAuthFile, "docker config.json holding registry credentials")
	fs.IntVar(&c.ImageGCHighThreshold, "image-gc-high-threshold", c.ImageGCHighThreshold, "disk usage percent under --root above which unused images are removed")
	fs.IntVar(&c.ImageGCLowThreshold, "image-gc-low-threshold", c.ImageGCLowThreshold, "disk usage percent under --root image garbage collection brings usage down to")
}

// LoadConfig builds the configuration from the defaults, then the YAML file
// at path (if path is not empty), then the flags of fs that were set on the
// command line. fs must have been bound to a Config with BindFlags; its
// values are the command line's.
func LoadConfig(path string, fs *pflag.FlagSet, flags *Config) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := readConfigFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	// Apply only the flags the user gave, so a flag's default never
	// overrides a value from the file.
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
	overlay(&cfg, flags, set)
	return cfg, cfg.Validate()
}

// overlay copies the fields of src whose key (json tag, which is also the
// flag name) is in set onto dst.
func overlay(dst, src *Config, set map[string]bool) {
	dv, sv := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range dv.NumField() {
		name, _, _ := strings.Cut(dv.Type().Field(i).Tag.Get("json"), ",")
		if set[name] {
			dv.Field(i).Set(sv.Field(i))
		}
	}
}

func readConfigFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	for name, dir := range map[string]string{"manifests": c.Manifests, "root": c.Root, "state": c.State, "log-dir": c.LogDir} {
		if !filepath.IsAbs(dir) {
			errs = append(errs, fmt.Errorf("--%s %q: must be an absolute path", name, dir))
		}
	}
	if _, err := netip.ParseAddrPort(c.MetricsAddr); err != nil {
		if _, _, herr := net.SplitHostPort(c.MetricsAddr); herr != nil {
			errs = append(errs, fmt.Errorf("--metrics-addr %q: want HOST:PORT: %w", c.MetricsAddr, herr))
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", c.LogFormat))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if p, err := netip.ParsePrefix(c.PodCIDR); err != nil || !p.Addr().Is4() {
		errs = append(errs, fmt.Errorf("--pod-cidr %q: want an IPv4 CIDR such as %s", c.PodCIDR, netsetup.DefaultPodCIDR))
	}
	if _, err := userns.ParseRange(c.UsernsRange); err != nil {
		errs = append(errs, fmt.Errorf("--userns-range: %w", err))
	}
	if c.MTU < 0 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("--mtu %d: want 0 (automatic) or a valid MTU", c.MTU))
	}
	if c.PodPidsLimit < -1 || c.PodPidsLimit == 0 {
		errs = append(errs, fmt.Errorf("--pod-pids-limit %d: want a positive number, or -1 for no limit", c.PodPidsLimit))
	}
	if err := c.Policy().Check(); err != nil {
		errs = append(errs, fmt.Errorf("--allowed-unsafe-sysctls: %w", err))
	}
	errs = append(errs, c.validateImages()...)
	return errors.Join(errs...)
}

// Policy is what the configuration says about which pods are valid.
func (c *Config) Policy() manifests.Policy {
	return manifests.Policy{AllowedUnsafeSysctls: c.AllowedUnsafeSysctls}
}

// validateImages checks the registry and image garbage collection
// settings, as kubelet checks its thresholds.
func (c *Config) validateImages() []error {
	var errs []error
	if err := image.CheckRegistries(c.InsecureRegistries, c.RegistryMirrors); err != nil {
		errs = append(errs, err)
	}
	if c.RegistryAuthFile != "" && !filepath.IsAbs(c.RegistryAuthFile) {
		errs = append(errs, fmt.Errorf("--registry-auth-file %q: must be an absolute path", c.RegistryAuthFile))
	}
	high, low := c.ImageGCHighThreshold, c.ImageGCLowThreshold
	switch {
	case high < 0 || high > 100 || low < 0 || low > 100:
		errs = append(errs, fmt.Errorf("--image-gc-high-threshold %d, --image-gc-low-threshold %d: want percentages from 0 to 100", high, low))
	case low > high:
		errs = append(errs, fmt.Errorf("--image-gc-low-threshold %d: must not exceed --image-gc-high-threshold %d", low, high))
	}
	return errs
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// NewLogger returns the agent's logger, writing to w in the configured format.
func (c *Config) NewLogger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
