// Command imagepull measures pulling a generated 5-layer image from a
// loopback registry (Debian's docker-registry, started here): peapod's
// image store (`peapod image pull`: download, verify, unpack) against
// `skopeo copy` to an OCI directory (download and verify only, no unpack)
// and `podman pull` (download and unpack into its overlay store) when
// podman is installed. The tools run interleaved, each into an empty
// store every time, and the table gives medians and ratios to peapod.
// Run it as root through hack/bench/imagepull.sh.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	peapod := flag.String("peapod", "", "peapod binary (required)")
	runs := flag.Int("runs", 5, "pulls per tool")
	layerMB := flag.Int("layer-mb", 10, "uncompressed MB per layer (5 layers)")
	flag.Parse()
	if err := run(*peapod, *runs, *layerMB); err != nil {
		fmt.Fprintln(os.Stderr, "imagepull:", err)
		os.Exit(1)
	}
}

type tool struct {
	name  string
	pull  func(ref, dir string) *exec.Cmd
	times []time.Duration
}

func run(peapod string, runs, layerMB int) error {
	if peapod == "" {
		return errors.New("--peapod is required")
	}
	work, err := os.MkdirTemp("", "peapod-imagepull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	host, stop, err := startRegistry(work)
	if err != nil {
		return err
	}
	defer stop()
	img, size, err := generate(layerMB)
	if err != nil {
		return err
	}
	ref := host + "/bench/image:1"
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	fmt.Printf("image: 5 layers, %d MB uncompressed, %.1f MB compressed, registry docker-registry on %s\n", 5*layerMB, float64(size)/1e6, host)

	tools := []*tool{
		{name: "peapod image pull", pull: func(ref, dir string) *exec.Cmd {
			return exec.Command(peapod, "image", "pull", "--root", dir, "--state", dir, ref)
		}},
		{name: "skopeo copy (no unpack)", pull: func(ref, dir string) *exec.Cmd {
			return exec.Command("skopeo", "copy", "-q", "--src-tls-verify=false", "docker://"+ref, "oci:"+dir+"/oci:1")
		}},
	}
	if _, err := exec.LookPath("podman"); err == nil {
		tools = append(tools, &tool{name: "podman pull", pull: func(ref, dir string) *exec.Cmd {
			return exec.Command("podman", "--root", dir+"/storage", "--runroot", dir+"/run", "--storage-driver", "overlay",
				"--cgroup-manager", "cgroupfs", "--events-backend", "none", "pull", "-q", "--tls-verify=false", ref)
		}})
	} else {
		fmt.Println("podman not installed: left out")
	}
	for i := range runs {
		for _, t := range tools {
			dir := filepath.Join(work, fmt.Sprintf("run-%d", i))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return err
			}
			cmd := t.pull(ref, dir)
			cmd.Env = append(os.Environ(), "CONTAINERS_CONF=/dev/null")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", t.name, err, out)
			}
			t.times = append(t.times, d)
			if err := clean(dir); err != nil {
				return err
			}
		}
	}
	base := median(tools[0].times)
	fmt.Printf("%-26s %10s %10s %10s %8s\n", "TOOL", "MEDIAN", "MIN", "MAX", "RATIO")
	for _, t := range tools {
		m := median(t.times)
		fmt.Printf("%-26s %10s %10s %10s %7.2fx\n", t.name, m.Round(time.Millisecond), slices.Min(t.times).Round(time.Millisecond),
			slices.Max(t.times).Round(time.Millisecond), float64(m)/float64(base))
	}
	return nil
}

// clean removes a run's store, unmounting what podman left mounted there.
func clean(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "storage")); err == nil {
		exec.Command("podman", "--root", dir+"/storage", "--runroot", dir+"/run", "--storage-driver", "overlay", "system", "reset", "-f").Run()
	}
	return os.RemoveAll(dir)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// generate makes 5 layers of layerMB MB each: files of 256 KiB, half
// random bytes, half text, so that gzip works as on real images.
func generate(layerMB int) (v1.Image, int64, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
	var size int64
	for l := range 5 {
		var b bytes.Buffer
		w := tar.NewWriter(&b)
		w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("layer%d/", l), Mode: 0o755})
		const fileSize = 256 << 10
		text := bytes.Repeat([]byte("peapod image pull benchmark line of text\n"), fileSize/2/41+1)[:fileSize/2]
		for f := range layerMB << 20 / fileSize {
			data := make([]byte, fileSize)
			for i := 0; i < fileSize/2; i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					data[i+j] = byte(v >> (8 * j))
				}
			}
			copy(data[fileSize/2:], text)
			w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("layer%d/f%04d", l, f), Mode: 0o644, Size: fileSize})
			w.Write(data)
		}
		w.Close()
		tb := b.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil })
		if err != nil {
			return nil, 0, err
		}
		n, err := layer.Size()
		if err != nil {
			return nil, 0, err
		}
		size += n
		layers = append(layers, layer)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	return img, size, err
}

// startRegistry runs docker-registry on a free loopback port with its
// storage in work, and returns its address and a function to stop it.
func startRegistry(work string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cfg := filepath.Join(work, "registry.yml")
	yml := fmt.Sprintf("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: %s}\n", work, addr)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		return "", nil, err
	}
	// Its log (a line per 404 while pushing) stays out of the table.
	cmd := exec.Command("docker-registry", "serve", cfg)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start docker-registry (apt-get install docker-registry): %w", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("docker-registry not ready after 30s")
}
