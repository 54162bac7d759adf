package image

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// realRegistry is Debian's docker-registry (distribution 2.8) serving on
// 127.0.0.1, started by the test and stopped in its cleanup.
type realRegistry struct {
	host string // 127.0.0.1:PORT
	tls  bool
}

type realRegistryOptions struct {
	tls            bool
	user, password string // htpasswd auth when user is set
}

func startRealRegistry(t *testing.T, o realRegistryOptions) *realRegistry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("needs docker-registry (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/data}, delete: {enabled: true}}\nhttp:\n  addr: %s\n", dir, addr)
	if o.tls {
		crt, key := writeCert(t, dir)
		cfg += fmt.Sprintf("  tls: {certificate: %s, key: %s}\n", crt, key)
	}
	if o.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(o.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth: {htpasswd: {realm: peapod-test, path: %s/htpasswd}}\n", dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry output:\n%s", out.String())
		}
	})
	r := &realRegistry{host: addr, tls: o.tls}
	r.waitReady(t)
	return r
}

func (r *realRegistry) waitReady(t *testing.T) {
	t.Helper()
	scheme := "http"
	if r.tls {
		scheme = "https"
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(scheme + "://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s not ready after 30s: %v", r.host, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeCert writes a self-signed certificate for registry.test and
// 127.0.0.1.
func writeCert(t *testing.T, dir string) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "registry.test"},
		DNSNames:     []string{"registry.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crt, key
}

// push writes img (or an index) to the registry with the registry API.
func (r *realRegistry) push(t *testing.T, repoTag string, img any, opts ...remote.Option) string {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}))
	switch v := img.(type) {
	case v1.Image:
		err = remote.Write(ref, v, opts...)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, v, opts...)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref.String()
}

func skopeo(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("needs skopeo (apt-get install skopeo)")
	}
	out, err := exec.Command("skopeo", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// redirect makes the store reach host (a name, not an address) at
// 127.0.0.1:port, so that a loopback registry can play a remote one
// whose name is not loopback.
func redirect(s *Store, host string, port string) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, _, _ := net.SplitHostPort(addr); h == host {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	s.reg.verified.(*http.Transport).DialContext = dial
	s.reg.lax.(*http.Transport).DialContext = dial
}

// TestRealRegistry pulls from a real registry images pushed with the
// registry API (one and a multi-arch index) and with skopeo from an OCI
// layout, imports skopeo's archives of one of them, and checks that a
// plain-HTTP registry whose name is not loopback is reached only when
// listed as insecure.
func TestRealRegistry(t *testing.T) {
	requireRoot(t)
	reg := startRealRegistry(t, realRegistryOptions{})
	img := busyboxImage(t)
	want, _ := img.ConfigName()
	apiRef := reg.push(t, "api/busybox:1", img)
	foreign := imageOf(t, v1.Config{Cmd: []string{"foreign"}}, layerOf(t, tarOf(t, fileE("foreign", "x"))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: hostPlatform().Architecture}}},
	)
	multiRef := reg.push(t, "api/multi:1", idx)

	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	skopeoRef := reg.host + "/skopeo/busybox:v1"
	skopeo(t, "copy", "--dest-tls-verify=false", "oci:"+dir+"/layout:v1", "docker://"+skopeoRef)
	dockerArchive, ociArchive := filepath.Join(dir, "docker.tar"), filepath.Join(dir, "oci.tar")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+skopeoRef, "docker-archive:"+dockerArchive+":example.com/saved:v1")
	skopeo(t, "copy", "--src-tls-verify=false", "docker://"+skopeoRef, "oci-archive:"+ociArchive+":v1")

	s := openTestStore(t, Options{})
	for _, ref := range []string{apiRef, multiRef, skopeoRef, "docker-archive:" + dockerArchive, "oci-archive:" + ociArchive} {
		got, err := s.Pull(context.Background(), mustParse(t, ref), PullOptions{})
		if err != nil {
			t.Errorf("pull %s: %v", ref, err)
			continue
		}
		// skopeo keeps the config as it is, so every copy is one image.
		if got.ID != want.String() || len(got.Layers) != 2 {
			t.Errorf("pull %s: ID %s with %d layers, want %s with 2", ref, got.ID, len(got.Layers), want)
		}
	}
	got, err := s.Get("example.com/saved:v1")
	if err != nil {
		t.Fatalf("the docker archive's own tag: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(got.Layers[1], "data/a"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("whiteout data/a: %v; want a character device", err)
	}
	if n, err := unix.Lgetxattr(filepath.Join(got.Layers[1], "opq"), overlayOpaque, make([]byte, 1)); err != nil || n != 1 {
		t.Errorf("opaque opq: %v", err)
	}

	// The same registry as an RFC 1918 address (the store's dialer is
	// pointed at loopback: no packet leaves the host), which
	// go-containerregistry alone would reach over plain HTTP: refused
	// unless listed.
	_, port, _ := net.SplitHostPort(reg.host)
	const private = "10.255.255.1"
	asRemote := mustParse(t, private+":"+port+"/api/busybox:1")
	strict := openTestStore(t, Options{})
	redirect(strict, private, port)
	if _, err := strict.Pull(context.Background(), asRemote, PullOptions{}); err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("pull from an unlisted plain-HTTP registry: %v, want a refusal", err)
	}
	listed := openTestStore(t, Options{InsecureRegistries: []string{private + ":" + port}})
	redirect(listed, private, port)
	if _, err := listed.Pull(context.Background(), asRemote, PullOptions{}); err != nil {
		t.Errorf("pull from a listed plain-HTTP registry: %v", err)
	}
}

// TestRealRegistryAuthTLS pulls from a registry with basic auth behind a
// self-signed certificate: refused until listed as insecure, then the
// registry's 401 until credentials come from the auth file or the pull's
// keychain.
func TestRealRegistryAuthTLS(t *testing.T) {
	requireRoot(t)
	reg := startRealRegistry(t, realRegistryOptions{tls: true, user: "peapod", password: "s3cret"})
	good := &authn.Basic{Username: "peapod", Password: "s3cret"}
	reg.push(t, "private/busybox:1", busyboxImage(t), remote.WithAuth(good))
	_, port, _ := net.SplitHostPort(reg.host)
	host := "registry.test:" + port
	ref := mustParse(t, host+"/private/busybox:1")

	authFile := func(user, pass string) string {
		p := filepath.Join(t.TempDir(), "config.json")
		cfg := fmt.Sprintf(`{"auths": {%q: {"username": %q, "password": %q}}}`, host, user, pass)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keychain := authn.NewMultiKeychain(staticKeychain{host: host, auth: good})
	for _, tc := range []struct {
		name     string
		opts     Options
		keychain authn.Keychain
		wantErr  string
	}{
		{name: "self-signed, not listed", opts: Options{AuthFile: authFile("peapod", "s3cret")}, wantErr: "certificate"},
		{name: "no credentials", opts: Options{InsecureRegistries: []string{host}, AuthFile: filepath.Join(t.TempDir(), "none")}, wantErr: "UNAUTHORIZED"},
		{name: "wrong password", opts: Options{InsecureRegistries: []string{host}, AuthFile: authFile("peapod", "wrong")}, wantErr: "UNAUTHORIZED"},
		{name: "auth file", opts: Options{InsecureRegistries: []string{host}, AuthFile: authFile("peapod", "s3cret")}},
		{name: "pull keychain before the auth file", opts: Options{InsecureRegistries: []string{host}, AuthFile: authFile("peapod", "wrong")}, keychain: keychain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, tc.opts)
			redirect(s, "registry.test", port)
			_, err := s.Pull(context.Background(), ref, PullOptions{Keychain: tc.keychain})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("pull: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("pull: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// staticKeychain holds one registry's credentials, as pull secrets will.
type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}
