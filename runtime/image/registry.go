package image

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryConfig is how the store reaches registries.
type registryConfig struct {
	insecure []string // HOST or HOST:PORT
	mirrors  []string // HOST[:PORT]
	keychain authn.Keychain
	// verified checks certificates; lax does not, for loopback and
	// --insecure-registry hosts only.
	verified, lax http.RoundTripper
}

// CheckRegistries reports every malformed insecure registry (HOST or
// HOST:PORT) and mirror (HOST[:PORT], or https://HOST), as Open would.
func CheckRegistries(insecure, mirrors []string) error {
	var errs []error
	for _, h := range insecure {
		if _, err := insecureHost(h); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range mirrors {
		if _, err := mirrorHost(m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func insecureHost(h string) (string, error) {
	if _, err := name.NewRegistry(h, name.StrictValidation); err != nil || strings.Contains(h, "/") {
		return "", fmt.Errorf("insecure registry %q: want HOST or HOST:PORT", h)
	}
	return h, nil
}

func mirrorHost(m string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(m, "https://"), "/")
	if _, err := name.NewRegistry(h, name.StrictValidation); err != nil || strings.Contains(h, "/") {
		return "", fmt.Errorf("registry mirror %q: want HOST[:PORT] (https://HOST is accepted)", m)
	}
	return h, nil
}

func newRegistryConfig(opts Options) (registryConfig, error) {
	c := registryConfig{}
	for _, h := range opts.InsecureRegistries {
		h, err := insecureHost(h)
		if err != nil {
			return c, err
		}
		c.insecure = append(c.insecure, h)
	}
	for _, m := range opts.Mirrors {
		m, err := mirrorHost(m)
		if err != nil {
			return c, err
		}
		c.mirrors = append(c.mirrors, m)
	}
	authFile := opts.AuthFile
	if authFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root"
		}
		authFile = filepath.Join(home, ".docker", "config.json")
	}
	c.keychain = fileKeychain{path: authFile}
	base := remote.DefaultTransport.(*http.Transport)
	c.verified = base.Clone()
	lax := base.Clone()
	lax.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	c.lax = lax
	return c, nil
}

// isLax reports whether host (HOST[:PORT]) may be reached over plain HTTP
// or unverified TLS: loopback, as docker and containerd allow, or listed
// with --insecure-registry. go-containerregistry would also allow RFC 1918
// addresses; peapod does not: a private address is no proof that the
// network path is private.
func (c *registryConfig) isLax(host string) bool {
	if slices.Contains(c.insecure, host) {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if slices.Contains(c.insecure, h) {
		return true
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// RoundTrip sends a registry request with TLS verification unless the
// host is lax, and refuses plain HTTP to any other host, whatever
// go-containerregistry's scheme guess.
func (c *registryConfig) RoundTrip(req *http.Request) (*http.Response, error) {
	if !c.isLax(req.URL.Host) {
		if req.URL.Scheme != "https" {
			return nil, fmt.Errorf("refusing plain HTTP to %s: only loopback registries and those given with --insecure-registry are reached without TLS", req.URL.Host)
		}
		return c.verified.RoundTrip(req)
	}
	return c.lax.RoundTrip(req)
}

// candidates returns where to pull ref from: the mirrors first for a
// docker.io image, then its own registry.
func (c *registryConfig) candidates(ref name.Reference) ([]name.Reference, error) {
	own, err := c.parse(ref.String())
	if err != nil {
		return nil, err
	}
	if ref.Context().RegistryStr() != name.DefaultRegistry {
		return []name.Reference{own}, nil
	}
	sep := ":"
	if _, ok := ref.(name.Digest); ok {
		sep = "@"
	}
	var out []name.Reference
	for _, m := range c.mirrors {
		mr, err := c.parse(m + "/" + ref.Context().RepositoryStr() + sep + ref.Identifier())
		if err != nil {
			return nil, fmt.Errorf("registry mirror %s: %w", m, err)
		}
		out = append(out, mr)
	}
	return append(out, own), nil
}

// parse parses s, marking it insecure for a lax host so that
// go-containerregistry falls back to plain HTTP there.
func (c *registryConfig) parse(s string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil || !c.isLax(ref.Context().RegistryStr()) {
		return ref, err
	}
	return name.ParseReference(s, name.Insecure)
}

// fileKeychain reads credentials from a docker config.json (auths,
// credsStore and credHelpers, through docker's own loader). The file is
// read at each lookup, so edits apply to the next pull.
type fileKeychain struct{ path string }

func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	f, err := os.Open(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry auth file: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("registry auth file %s: %w", k.path, err)
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("registry auth file %s: %s: %w", k.path, key, err)
		}
		cfg := authn.AuthConfig{
			Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
			IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
		}
		if cfg != (authn.AuthConfig{}) {
			return authn.FromConfig(cfg), nil
		}
	}
	return authn.Anonymous, nil
}

// hostPlatform is the platform picked from a multi-arch index: linux and
// this binary's architecture, with the ARM variant the CPU reports.
func hostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = armVariant()
	}
	return p
}

// armVariant reads the CPU architecture from /proc/cpuinfo, as
// containerd does; v7 when unknown, and for ARMv8 CPUs running 32-bit
// code.
func armVariant() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "CPU architecture" {
			switch v = strings.TrimSpace(v); v {
			case "5", "6", "7":
				return "v" + v
			}
		}
	}
	return "v7"
}

// platformMatches reports whether an index entry's platform is want's.
func platformMatches(got *v1.Platform, want v1.Platform) bool {
	return got != nil && got.OS == want.OS && got.Architecture == want.Architecture &&
		(want.Variant == "" || got.Variant == want.Variant)
}
