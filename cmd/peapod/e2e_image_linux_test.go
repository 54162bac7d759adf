package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/agent"
	"github.com/peapod/peapod/runtime/image"
)

// testImage is busybox in one layer, with cmd as its Cmd.
func testImage(t *testing.T, cmd string) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755})
	w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))})
	w.Write(bb)
	w.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Cmd: []string{cmd}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestImageCLI drives `peapod image` with no agent running: pull from a
// loopback registry, import a docker archive under a name, list, remove,
// and prune, which keeps the images used since boot.
func TestImageCLI(t *testing.T) {
	requireRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/e2e/busybox:1"
	pushRef, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(pushRef, testImage(t, "pulled")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "saved.tar")
	tag, err := name.NewTag("example.com/saved:v0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, tag, testImage(t, "imported")); err != nil {
		t.Fatal(err)
	}
	root, state := t.TempDir(), t.TempDir()
	flags := []string{"--root", root, "--state", state}
	run := func(wantCode int, args ...string) string {
		t.Helper()
		out, code := runPeapod(t, append(append([]string{"image"}, args...), flags...)...)
		if code != wantCode {
			t.Fatalf("peapod image %v: exit %d, want %d\n%s", args, code, wantCode, out)
		}
		return out
	}

	if out := run(0, "pull", ref); !strings.Contains(out, "downloaded") || !strings.Contains(out, "sha256:") {
		t.Errorf("pull output lacks per-layer progress and the ID:\n%s", out)
	}
	run(0, "import", archive, "example.com/imported:v1")
	out := collapseSpaces(run(0, "ls"))
	for _, want := range []string{host + "/e2e/busybox 1 sha256:", "example.com/imported", "example.com/saved", "docker-archive:" + archive} {
		if !strings.Contains(out, want) {
			t.Errorf("ls lacks %q:\n%s", want, out)
		}
	}
	var list []image.Image
	if err := json.Unmarshal([]byte(run(0, "ls", "-o", "json")), &list); err != nil || len(list) != 2 {
		t.Fatalf("ls -o json: %v, %d images; want 2", err, len(list))
	}
	if out := run(1, "pull", host+"/e2e/nothere:1"); !strings.Contains(out, "NAME_UNKNOWN") {
		t.Errorf("pull of an absent image does not show the registry's message:\n%s", out)
	}

	// The imported image was used (since boot): prune without an agent
	// keeps it and removes the other.
	s, err := image.Open(image.Options{Root: filepath.Join(root, "images")})
	if err != nil {
		t.Fatal(err)
	}
	imported, err := s.Get("example.com/imported:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkUsed(imported.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if out := run(1, "rm", "example.com/imported:v1"); !strings.Contains(out, "may be in use") {
		t.Errorf("rm of an image used since boot, without the agent:\n%s", out)
	}
	if out := run(0, "prune"); !strings.Contains(out, "used since the host booted") {
		t.Errorf("prune without an agent does not say what it keeps:\n%s", out)
	}
	out = run(0, "ls")
	if strings.Contains(out, "e2e/busybox") || !strings.Contains(out, "example.com/imported") {
		t.Errorf("after prune:\n%s", out)
	}
	run(0, "rm", "--force", "example.com/imported:v1", "example.com/saved:v0", "docker-archive:"+archive)
	if ents, _ := os.ReadDir(filepath.Join(root, "images", "layers")); len(ents) != 0 {
		t.Errorf("layers left after the last image went: %v", ents)
	}
}

// TestImagePruneAsksAgent serves a pod list on the agent's status socket:
// prune keeps the image the pod names and removes the other.
func TestImagePruneAsksAgent(t *testing.T) {
	requireRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, repo := range []string{"kept", "pruned"} {
		r, err := name.ParseReference(host + "/e2e/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, testImage(t, repo)); err != nil {
			t.Fatal(err)
		}
	}
	root, state := t.TempDir(), t.TempDir()
	l, err := net.Listen("unix", filepath.Join(state, agent.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	pods := corev1.PodList{Items: []corev1.Pod{{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: host + "/e2e/kept:1"}}}}}}
	agentSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(pods)
	})}
	go agentSrv.Serve(l)
	t.Cleanup(func() { agentSrv.Close() })
	for _, repo := range []string{"kept", "pruned"} {
		if out, code := runPeapod(t, "image", "pull", "--root", root, host+"/e2e/"+repo+":1"); code != 0 {
			t.Fatalf("pull: %s", out)
		}
	}
	if out, code := runPeapod(t, "image", "prune", "--root", root, "--state", state); code != 0 || strings.Contains(out, "booted") {
		t.Fatalf("prune (exit %d) did not ask the agent:\n%s", code, out)
	}
	out, _ := runPeapod(t, "image", "ls", "--root", root)
	if !strings.Contains(out, "e2e/kept") || strings.Contains(out, "e2e/pruned") {
		t.Errorf("after prune, want only the pod's image:\n%s", out)
	}
	if out, code := runPeapod(t, "image", "rm", "--root", root, "--state", state, host+"/e2e/kept:1"); code == 0 || !strings.Contains(out, "may be in use") {
		t.Errorf("rm of the pod's image (exit %d):\n%s", code, out)
	}
}

// collapseSpaces turns each run of blanks of a table into one space.
func collapseSpaces(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}
