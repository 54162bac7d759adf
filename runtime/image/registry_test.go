package image

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

func TestLaxHosts(t *testing.T) {
	c, err := newRegistryConfig(Options{InsecureRegistries: []string{"registry.lan:5000", "10.0.0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"127.0.0.1:5000":    true,
		"127.1.2.3":         true,
		"[::1]:5000":        true,
		"localhost:5000":    true,
		"registry.lan:5000": true,
		"registry.lan:5001": false,
		"10.0.0.9:443":      true,
		"10.0.0.8:5000":     false, // RFC 1918, which go-containerregistry alone would reach over HTTP
		"192.168.1.2:5000":  false,
		"172.16.0.1":        false,
		"ghcr.io":           false,
	} {
		if got := c.isLax(host); got != want {
			t.Errorf("isLax(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestPlainHTTPRefused sends requests through the store's transport: plain
// HTTP to a private, unlisted address is refused before any connection.
func TestPlainHTTPRefused(t *testing.T) {
	c, err := newRegistryConfig(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing may leave the host, even if the guard is broken.
	c.verified, c.lax = noNetwork{}, noNetwork{}
	for _, u := range []string{"http://10.1.2.3:5000/v2/", "http://192.168.0.10/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		_, err := c.RoundTrip(req)
		if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") || !strings.Contains(err.Error(), "--insecure-registry") {
			t.Errorf("GET %s: %v, want a refusal naming --insecure-registry", u, err)
		}
	}
}

type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("sent to the network")
}

func TestRegistryOptionErrors(t *testing.T) {
	for _, o := range []Options{
		{InsecureRegistries: []string{"http://registry.lan"}},
		{InsecureRegistries: []string{"registry.lan/path"}},
		{Mirrors: []string{"http://mirror.lan"}},
	} {
		if _, err := newRegistryConfig(o); err == nil {
			t.Errorf("newRegistryConfig(%+v) accepted", o)
		}
	}
}

func TestMirrorCandidates(t *testing.T) {
	c, err := newRegistryConfig(Options{Mirrors: []string{"mirror.lan:5000", "https://mirror2.lan/"}})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"busybox": "mirror.lan:5000/library/busybox:latest mirror2.lan/library/busybox:latest index.docker.io/library/busybox:latest",
		"bitnami/redis@sha256:" + strings.Repeat("a", 64): "mirror.lan:5000/bitnami/redis@sha256:" + strings.Repeat("a", 64) + " mirror2.lan/bitnami/redis@sha256:" + strings.Repeat("a", 64) + " index.docker.io/bitnami/redis@sha256:" + strings.Repeat("a", 64),
		"ghcr.io/org/app:v1":                              "ghcr.io/org/app:v1",
	} {
		ref, err := name.ParseReference(in)
		if err != nil {
			t.Fatal(err)
		}
		cands, err := c.candidates(ref)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range cands {
			got = append(got, c.Name())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("candidates(%s) = %v, want %s", in, got, want)
		}
	}
}

func TestFileKeychain(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(`{"auths": {
		"registry.lan:5000": {"auth": "dXNlcjpwYXNz"},
		"https://index.docker.io/v1/": {"username": "hub", "password": "hubpass"}
	}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	k := fileKeychain{path: p}
	for reg, want := range map[string]authn.AuthConfig{
		"registry.lan:5000":     {Username: "user", Password: "pass"},
		name.DefaultRegistry:    {Username: "hub", Password: "hubpass"},
		"elsewhere.example.com": {},
	} {
		r, _ := name.NewRegistry(reg)
		a, err := k.Resolve(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Authorization()
		if err != nil {
			t.Fatal(err)
		}
		if got.Username != want.Username || got.Password != want.Password {
			t.Errorf("credentials for %s = %+v, want %+v", reg, got, want)
		}
	}
	if a, err := (fileKeychain{path: filepath.Join(t.TempDir(), "none.json")}).Resolve(name.MustParseReference("x").Context()); err != nil || a != authn.Anonymous {
		t.Errorf("missing auth file: %v, %v; want anonymous", a, err)
	}
}

func TestFlights(t *testing.T) {
	var f flights
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (any, error) {
		calls.Add(1)
		select {
		case <-release:
			return "done", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	results := make(chan any, 3)
	for range 3 {
		go func() {
			v, _ := f.do(context.Background(), "k", fn)
			results <- v
		}()
	}
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.calls["k"] != nil && f.calls["k"].waiters == 3
	})
	// A waiter that gives up does not cancel the others' call.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.do(ctx, "k", fn); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled waiter: %v", err)
	}
	close(release)
	for range 3 {
		if v := <-results; v != "done" {
			t.Errorf("result %v, want done", v)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls for one key, want 1", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met after 30s")
		}
		time.Sleep(time.Millisecond)
	}
}
