package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

var testConfig = v1.Config{
	Entrypoint: []string{"/bin/busybox"},
	Cmd:        []string{"sleep", "3600"},
	Env:        []string{"PATH=/bin", "GREETING=hi"},
	WorkingDir: "/data",
	User:       "1000:1000",
}

// testRegistry is go-containerregistry's in-process registry on
// 127.0.0.1, counting blob downloads; wrap, when set, may alter responses.
type testRegistry struct {
	host      string
	blobGets  atomic.Int64
	wrap      func(w http.ResponseWriter, r *http.Request, next http.Handler)
	serverURL string
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			tr.blobGets.Add(1)
		}
		if tr.wrap != nil {
			tr.wrap(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.serverURL = srv.URL
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) push(t *testing.T, repoTag string, img v1.Image) Reference {
	t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return mustParse(t, ref.String())
}

func mustParse(t *testing.T, s string) Reference {
	t.Helper()
	r, err := ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Root == "" {
		opts.Root = filepath.Join(t.TempDir(), "images")
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for _, l := range busyboxLayers(t) {
		layers = append(layers, layerOf(t, l))
	}
	return imageOf(t, testConfig, layers...)
}

func TestPullAndGet(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	img := busyboxImage(t)
	ref := reg.push(t, "test/busybox:v1", img)
	root := filepath.Join(t.TempDir(), "images")
	metrics := prometheus.NewRegistry()
	s := openTestStore(t, Options{Root: root, Metrics: metrics})

	got, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(s.met.pulls.WithLabelValues("success")); n != 1 {
		t.Errorf("peapod_image_pulls_total{result=success} = %v, want 1", n)
	}
	if n := testutil.ToFloat64(s.met.bytes); n < 1<<19 {
		t.Errorf("peapod_image_pull_bytes_total = %v, want the compressed layers' size", n)
	}
	if n, err := testutil.GatherAndCount(metrics, "peapod_image_pull_duration_seconds"); err != nil || n != 1 {
		t.Errorf("pull duration histogram: %d series, %v", n, err)
	}
	cfgName, _ := img.ConfigName()
	digest, _ := img.Digest()
	if got.ID != cfgName.String() {
		t.Errorf("ID = %s, want the config digest %s", got.ID, cfgName)
	}
	if diff := cmp.Diff([]string{reg.host + "/test/busybox:v1"}, got.Names); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{reg.host + "/test/busybox@" + digest.String()}, got.RepoDigests); diff != "" {
		t.Errorf("RepoDigests (-want +got):\n%s", diff)
	}
	want := Config{Entrypoint: testConfig.Entrypoint, Cmd: testConfig.Cmd, Env: testConfig.Env, WorkingDir: "/data", User: "1000:1000"}
	if diff := cmp.Diff(want, got.Config); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
	if len(got.Layers) != 2 || got.Size < 1<<20 {
		t.Fatalf("Layers %v, Size %d; want 2 layers and busybox's size", got.Layers, got.Size)
	}
	if _, err := os.Stat(filepath.Join(got.Layers[0], "bin/busybox")); err != nil {
		t.Errorf("base layer: %v", err)
	}

	// Found by name (as written or normalised), ID and repo digest, also
	// by a store opened afresh, as after an agent restart.
	s2 := openTestStore(t, Options{Root: root})
	for _, key := range []string{ref.String(), got.ID, got.RepoDigests[0]} {
		g, err := s2.Get(key)
		if err != nil || g.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", key, g, err)
		}
	}
	if _, err := s2.Get("docker.io/library/nothere:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an absent image: %v, want ErrNotFound", err)
	}
	if err := s2.MarkUsed(got.ID); err != nil {
		t.Fatal(err)
	}
	list, err := s2.List()
	if err != nil || len(list) != 1 || list[0].LastUsed.IsZero() {
		t.Errorf("List = %v, %v; want the image, used", list, err)
	}
}

// TestPullCompressions pulls an image whose layers are zstd, plain tar
// and gzip: the store tells them by their first bytes.
func TestPullCompressions(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	zstdLayer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarOf(t, fileE("z", "zstd")))), nil
	}, tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	plain := static.NewLayer(tarOf(t, fileE("p", "plain")), types.OCIUncompressedLayer)
	gz := layerOf(t, tarOf(t, fileE("g", "gzip")))
	ref := reg.push(t, "test/compressions:1", imageOf(t, v1.Config{}, zstdLayer, plain, gz))
	s := openTestStore(t, Options{})
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{0: "z", 1: "p", 2: "g"} {
		if _, err := os.Stat(filepath.Join(img.Layers[i], want)); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
}

// TestPullOnce pulls one image from many goroutines at once, then an
// image sharing its base layer: each layer is downloaded once.
func TestPullOnce(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	layers := busyboxLayers(t)
	base, top := layerOf(t, layers[0]), layerOf(t, layers[1])
	ref := reg.push(t, "test/a:1", imageOf(t, testConfig, base, top))
	other := reg.push(t, "test/b:1", imageOf(t, v1.Config{Cmd: []string{"true"}}, base))
	s := openTestStore(t, Options{})
	reg.blobGets.Store(0)
	// Blobs are held back until all eight pulls wait on the first, so
	// that none can finish before the last starts.
	release := make(chan struct{})
	reg.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			<-release
		}
		next.ServeHTTP(w, r)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.Pull(context.Background(), ref, PullOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, func() bool {
		s.pulls.mu.Lock()
		defer s.pulls.mu.Unlock()
		c := s.pulls.calls[ref.String()]
		return c != nil && c.waiters == 8
	})
	close(release)
	wg.Wait()
	reg.wrap = nil
	// The config and two layers.
	if n := reg.blobGets.Load(); n != 3 {
		t.Errorf("%d blob downloads for 8 concurrent pulls, want 3", n)
	}
	reg.blobGets.Store(0)
	b, err := s.Pull(context.Background(), other, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.blobGets.Load(); n != 1 {
		t.Errorf("%d blob downloads for an image whose only layer is in the store, want 1 (its config)", n)
	}
	a, _ := s.Get(ref.String())
	if b.Layers[0] != a.Layers[0] {
		t.Errorf("shared layer unpacked twice: %s and %s", a.Layers[0], b.Layers[0])
	}
}

// TestTwoStoresOneRoot pulls one image through two stores on one root at
// once, as the agent and the CLI may: both get it, unpacked once.
func TestTwoStoresOneRoot(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ref := reg.push(t, "test/a:1", busyboxImage(t))
	a := openTestStore(t, Options{})
	b := openTestStore(t, Options{Root: a.root})
	var wg sync.WaitGroup
	imgs := make([]*Image, 2)
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			img, err := s.Pull(context.Background(), ref, PullOptions{})
			if err != nil {
				t.Error(err)
			}
			imgs[i] = img
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if diff := cmp.Diff(imgs[0].Layers, imgs[1].Layers); diff != "" {
		t.Errorf("layers differ (-a +b):\n%s", diff)
	}
	if layers, _ := os.ReadDir(filepath.Join(a.root, "layers")); len(layers) != 2 {
		t.Errorf("%d layer directories, want 2", len(layers))
	}
	assertEmpty(t, a.root, "tmp")
}

// TestRepeatedLayer pulls an image with a layer twice: overlay takes a
// lower directory once, so the image lists its topmost copy only.
func TestRepeatedLayer(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	a, b := layerOf(t, tarOf(t, fileE("a", "a"))), layerOf(t, tarOf(t, fileE("b", "b")))
	ref := reg.push(t, "test/repeat:1", imageOf(t, v1.Config{}, a, b, a))
	s := openTestStore(t, Options{})
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || !strings.HasSuffix(filepath.Dir(img.Layers[0]), mustDiffID(t, b)) || !strings.HasSuffix(filepath.Dir(img.Layers[1]), mustDiffID(t, a)) {
		t.Errorf("Layers = %v, want b's then a's", img.Layers)
	}
}

func mustDiffID(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return d.Hex
}

// TestPullSharedLayerCancel pulls two images sharing a layer; the pull
// whose download of that layer the other joined is cancelled: the other
// still gets its image.
func TestPullSharedLayerCancel(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	layers := busyboxLayers(t)
	base := layerOf(t, layers[0])
	refA := reg.push(t, "test/a:1", imageOf(t, v1.Config{Cmd: []string{"a"}}, base))
	refB := reg.push(t, "test/b:1", imageOf(t, v1.Config{Cmd: []string{"b"}}, base))
	digest, _ := base.Digest()
	diffID, _ := base.DiffID()
	started, release := make(chan struct{}, 4), make(chan struct{})
	reg.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, digest.String()) && r.Method == http.MethodGet {
			started <- struct{}{}
			<-release
		}
		next.ServeHTTP(w, r)
	}
	s := openTestStore(t, Options{})
	ctxA, cancelA := context.WithCancel(context.Background())
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := s.Pull(ctxA, refA, PullOptions{}); errA <- err }()
	<-started
	go func() { _, err := s.Pull(context.Background(), refB, PullOptions{}); errB <- err }()
	waitFor(t, func() bool {
		s.layers.mu.Lock()
		defer s.layers.mu.Unlock()
		c := s.layers.calls[diffID.String()]
		return c != nil && c.waiters == 2
	})
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled pull: %v", err)
	}
	close(release)
	if err := <-errB; err != nil {
		t.Errorf("the other pull failed with the cancelled one: %v", err)
	}
}

// TestPullCancelOneWaiter cancels one of two pulls waiting on the same
// download: the other still gets the image.
func TestPullCancelOneWaiter(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ref := reg.push(t, "test/a:1", busyboxImage(t))
	release := make(chan struct{})
	reg.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.Contains(r.URL.Path, "/blobs/") {
			<-release
		}
		next.ServeHTTP(w, r)
	}
	s := openTestStore(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { _, err := s.Pull(ctx, ref, PullOptions{}); errc <- err }()
	go func() { _, err := s.Pull(context.Background(), ref, PullOptions{}); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled pull: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-errc; err != nil {
		t.Errorf("the other pull failed: %v", err)
	}
}

// TestPullBadBlobs serves a corrupt layer, then an image whose config
// names the wrong diffID: each pull fails with the reason and leaves
// nothing behind.
func TestPullBadBlobs(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	img := busyboxImage(t)
	ref := reg.push(t, "test/corrupt:1", img)
	layers, _ := img.Layers()
	bad, _ := layers[0].Digest()
	reg.wrap = func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if !strings.HasSuffix(r.URL.Path, bad.String()) || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		body[len(body)-100] ^= 0xff
		w.Header().Set("Content-Length", rec.Header().Get("Content-Length"))
		w.Write(body)
	}
	s := openTestStore(t, Options{})
	_, err := s.Pull(context.Background(), ref, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("pull of a corrupt blob: %v, want a digest error", err)
	}
	reg.wrap = nil

	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	// A diffID no content has. (Naming another layer's diffID would not
	// fail: the store holds the layer the config names, and the image is
	// exactly what its config says.)
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	wrong, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), reg.push(t, "test/wrongdiff:1", wrong), PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "the image config says") {
		t.Errorf("pull with a wrong diffID: %v, want a diffID mismatch", err)
	}
	assertEmpty(t, s.root, "tmp", "images")
	if _, err := s.Get(ref.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after failed pull: %v, want ErrNotFound", err)
	}
}

func assertEmpty(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if ents, err := os.ReadDir(filepath.Join(root, d)); err != nil || len(ents) > 0 {
			t.Errorf("%s holds %v (%v), want nothing", d, ents, err)
		}
	}
}

func TestPullRegistryErrors(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	s := openTestStore(t, Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for _, tc := range []struct{ ref, want string }{
		{reg.host + "/no/such:1", "NAME_UNKNOWN"},
		{closed + "/x:1", "connection refused"},
	} {
		_, err := s.Pull(context.Background(), mustParse(t, tc.ref), PullOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pull %s: %v, want an error containing %q", tc.ref, err, tc.want)
		}
	}
}

func TestPullMultiArch(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	host := busyboxImage(t)
	foreign := imageOf(t, v1.Config{Cmd: []string{"foreign"}}, layerOf(t, tarOf(t, fileE("foreign", "x"))))
	other := "arm64"
	if hostPlatform().Architecture == "arm64" {
		other = "amd64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: hostPlatform().Architecture}}},
	)
	ref, _ := name.ParseReference(reg.host + "/test/multi:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t, Options{})
	got, err := s.Pull(context.Background(), mustParse(t, ref.String()), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := host.ConfigName()
	idxDigest, _ := idx.Digest()
	if got.ID != want.String() || got.RepoDigests[0] != reg.host+"/test/multi@"+idxDigest.String() {
		t.Errorf("got %s %v, want the host's image %s, repo digest of the index %s", got.ID, got.RepoDigests, want, idxDigest)
	}
}

// TestPullMirror pulls a docker.io image through mirrors: the first is
// down, the second (the test registry) has it; docker.io is not asked.
func TestPullMirror(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	reg.push(t, "library/busybox:mirrored", busyboxImage(t))
	s := openTestStore(t, Options{Mirrors: []string{"127.0.0.1:1", reg.host}})
	got, err := s.Pull(context.Background(), mustParse(t, "busybox:mirrored"), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Names[0] != "docker.io/library/busybox:mirrored" || !strings.HasPrefix(got.RepoDigests[0], "docker.io/library/busybox@sha256:") {
		t.Errorf("names %v, repo digests %v; want docker.io's", got.Names, got.RepoDigests)
	}
}

func TestPullArchives(t *testing.T) {
	requireRoot(t)
	img := busyboxImage(t)
	want, _ := img.ConfigName()
	dir := t.TempDir()

	dockerArchive := filepath.Join(dir, "docker.tar")
	tag, _ := name.NewTag("example.com/team/app:v1")
	if err := tarball.WriteToFile(dockerArchive, tag, img); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "v2"})); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(dir, "oci.tar")
	if err := os.WriteFile(ociArchive, tarDir(t, filepath.Join(dir, "layout")), 0o600); err != nil {
		t.Fatal(err)
	}
	// The layout, not the archive, also holds a multi-arch index.
	foreign := imageOf(t, v1.Config{Cmd: []string{"foreign"}}, layerOf(t, tarOf(t, fileE("foreign", "x"))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: hostPlatform().Architecture}}},
	)
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: "multi"})); err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t, Options{})
	for _, tc := range []struct {
		ref   string
		names []string
	}{
		{"docker-archive:" + dockerArchive, []string{"docker-archive:" + dockerArchive, "example.com/team/app:v1"}},
		{"oci:" + dir + "/layout:v2", []string{"oci:" + dir + "/layout:v2"}},
		{"oci:" + dir + "/layout:multi", []string{"oci:" + dir + "/layout:multi"}},
		{"oci-archive:" + ociArchive, []string{"oci-archive:" + ociArchive}},
	} {
		got, err := s.Pull(context.Background(), mustParse(t, tc.ref), PullOptions{})
		if err != nil {
			t.Errorf("pull %s: %v", tc.ref, err)
			continue
		}
		if got.ID != want.String() || got.Config.WorkingDir != "/data" || len(got.Layers) != 2 {
			t.Errorf("pull %s: got %s %+v", tc.ref, got.ID, got.Config)
		}
		for _, n := range tc.names {
			if !strings.Contains(strings.Join(got.Names, " "), n) {
				t.Errorf("pull %s: names %v, want %s among them", tc.ref, got.Names, n)
			}
		}
	}
	if _, err := s.Pull(context.Background(), mustParse(t, "oci:"+dir+"/layout:nope"), PullOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("pull of an absent tag: %v, want ErrNotFound", err)
	}
	assertEmpty(t, s.root, "tmp")
}

// tarDir tars a directory's regular files and directories.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var es []entry
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.IsDir() {
			es = append(es, dirE(rel+"/"))
			return nil
		}
		b, err := os.ReadFile(p)
		es = append(es, fileE(rel, string(b)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tarOf(t, es...)
}

// TestRemovePruneGC removes images by name, then prunes and collects,
// checking that images in use stay and shared layers go with the last
// image that needs them.
func TestRemovePruneGC(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	layers := busyboxLayers(t)
	base, top := layerOf(t, layers[0]), layerOf(t, layers[1])
	uniq := func(s string) v1.Layer { return layerOf(t, tarOf(t, fileE(s, s))) }
	s := openTestStore(t, Options{})
	pull := func(repo string, ls ...v1.Layer) *Image {
		img, err := s.Pull(context.Background(), reg.push(t, repo, imageOf(t, v1.Config{Cmd: []string{repo}}, ls...)), PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	a := pull("t/a:1", base, top)
	b := pull("t/b:1", base, uniq("b"))
	if err := s.Tag(a.ID, mustParse(t, "example.com/alias:1")); err != nil {
		t.Fatal(err)
	}
	// Removing one of two names keeps the image.
	if err := s.Remove("example.com/alias:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(a.ID); err != nil {
		t.Fatalf("image went with one of its names: %v", err)
	}
	if err := s.Remove(b.Names[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.Layers[1]); !os.IsNotExist(err) {
		t.Errorf("b's own layer stayed: %v", err)
	}
	if _, err := os.Stat(a.Layers[0]); err != nil {
		t.Errorf("the shared layer went with b: %v", err)
	}

	c := pull("t/c:1", uniq("c"))
	inUse := func(id string) bool { return id == c.ID }
	freed, err := s.Prune(context.Background(), inUse)
	if err != nil || freed < 1<<20 {
		t.Errorf("Prune freed %d, %v; want busybox's size", freed, err)
	}
	if list, _ := s.List(); len(list) != 1 || list[0].ID != c.ID {
		t.Errorf("after prune: %v, want only the image in use", list)
	}

	// GC: usage is 70% plus 5 per image; high 85, low 82. Four images
	// (90%): the two least recently used that are not in use go.
	imgs := []*Image{pull("t/d:1", uniq("d")), pull("t/e:1", uniq("e")), pull("t/f:1", uniq("f"))}
	for _, img := range []*Image{imgs[1], imgs[0], imgs[2]} { // e, d, f: d older than f
		if err := s.MarkUsed(img.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.usage = func() (float64, error) {
		list, err := s.List()
		return 70 + 5*float64(len(list)), err
	}
	if _, err := s.GC(context.Background(), inUse, 85, 82); err != nil {
		t.Fatal(err)
	}
	var left []string
	list, _ := s.List()
	for _, img := range list {
		left = append(left, img.Names[0])
	}
	if diff := cmp.Diff([]string{c.Names[0], imgs[2].Names[0]}, left); diff != "" {
		t.Errorf("images left by GC (-want +got):\n%s", diff)
	}
	assertEmpty(t, s.root, "tmp")
	// A config and a manifest per image left, nothing of the others.
	if blobs, _ := os.ReadDir(filepath.Join(s.root, "blobs", "sha256")); len(blobs) != 2*len(list) {
		t.Errorf("%d blobs for %d images, want 2 each", len(blobs), len(list))
	}
}

// TestOpenSweeps checks that Open removes the work directories of dead
// pulls and keeps those of live ones.
func TestOpenSweeps(t *testing.T) {
	requireRoot(t)
	s := openTestStore(t, Options{})
	live, err := s.newWorkDir()
	if err != nil {
		t.Fatal(err)
	}
	defer live.release()
	stale := filepath.Join(s.root, "tmp", "work-stale")
	if err := os.MkdirAll(filepath.Join(stale, "fs"), 0o700); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(s.root, "images", ".tmp-123")
	if err := os.WriteFile(torn, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	openTestStore(t, Options{Root: s.root})
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("torn record write kept: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale work directory kept: %v", err)
	}
	if _, err := os.Stat(live.path); err != nil {
		t.Errorf("live work directory swept: %v", err)
	}
}

// TestPullDiskFull pulls into a 1 MiB tmpfs: the pull fails naming the
// full disk and leaves no partial files.
func TestPullDiskFull(t *testing.T) {
	requireRoot(t)
	reg := newTestRegistry(t)
	ref := reg.push(t, "test/big:1", busyboxImage(t))
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	s := openTestStore(t, Options{Root: root})
	_, err := s.Pull(context.Background(), ref, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("pull onto a full disk: %v, want ENOSPC named", err)
	}
	assertEmpty(t, root, "tmp", "images")
	// Layers that were complete stay, for the next pull; nothing else.
	layers, _ := os.ReadDir(filepath.Join(root, "layers"))
	for _, l := range layers {
		if _, err := os.Stat(filepath.Join(root, "layers", l.Name(), "meta.json")); err != nil {
			t.Errorf("partial layer %s left: %v", l.Name(), err)
		}
	}
}
