package image

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 || os.Getenv("PEAPOD_SKIP_ROOT") != "" {
		t.Skip("needs root (and PEAPOD_SKIP_ROOT unset): unpacks layers with their owners, device nodes and trusted xattrs")
	}
}

// entry is one tar entry of a test layer.
type entry struct {
	hdr  tar.Header
	body string
}

func dirE(name string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func fileE(name, body string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func symlinkE(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlinkE(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// tarOf returns a tar of the entries, in order.
func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if h.Format == tar.FormatUnknown && len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := w.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// layerOf makes a gzip'd image layer of a tar.
func layerOf(t testing.TB, tarBytes []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf makes an OCI image of the layers with the given config.
func imageOf(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	oci := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(oci, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", hostPlatform().Architecture
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// busyboxLayers are the layers of the test image: busybox with a
// hard link and a symlink to it, then a layer with a whiteout and an
// opaque directory over the first.
func busyboxLayers(t testing.TB) [][]byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
	exe := fileE("bin/busybox", string(bb))
	exe.hdr.Mode = 0o755
	base := tarOf(t,
		dirE("bin/"), exe, symlinkE("bin/sh", "busybox"), hardlinkE("bin/hl", "bin/busybox"),
		dirE("data/"), fileE("data/a", "a"), fileE("data/b", "b"),
		dirE("opq/"), fileE("opq/old", "old"),
	)
	top := tarOf(t,
		dirE("data/"), fileE("data/.wh.a", ""),
		dirE("opq/"), fileE("opq/.wh..wh..opq", ""), fileE("opq/new", "new"),
	)
	return [][]byte{base, top}
}
