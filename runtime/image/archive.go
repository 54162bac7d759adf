package image

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names an image inside an OCI layout.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// resolveDockerArchive opens a `docker save` tar holding one image. The
// image is named after the archive and after the tags docker saved with it.
func (s *Store) resolveDockerArchive(ref Reference) (*source, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(ref.Path) })
	if err != nil {
		return nil, fmt.Errorf("read docker archive: %w", err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("docker archive %s holds %d images; peapod takes archives of one image", ref.Path, len(m))
	}
	img, err := tarball.ImageFromPath(ref.Path, nil)
	if err != nil {
		return nil, fmt.Errorf("read docker archive: %w", err)
	}
	src := &source{img: img, from: ref.Path, names: []string{ref.String()}, release: func() {}}
	for _, t := range m[0].RepoTags {
		if r, err := ParseReference(t); err == nil && r.Transport == Registry {
			src.names = append(src.names, r.String())
		}
	}
	return src, nil
}

// resolveOCIArchive unpacks an oci-archive tar (an OCI layout) into a work
// directory, with the same safe unpacker as layers, and reads it as a
// layout. The directory goes with the source's release.
func (s *Store) resolveOCIArchive(ctx context.Context, ref Reference) (*source, error) {
	f, err := os.Open(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("read oci archive: %w", err)
	}
	defer f.Close()
	w, err := s.newWorkDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(w.path, "layout")
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		_, err = unpackLayer(&digester{r: f, h: sha256.New(), ctx: ctx}, dir)
	}
	if err != nil {
		w.release()
		return nil, fmt.Errorf("read oci archive %s: %w", ref.Path, err)
	}
	src, err := resolveLayout(ref, dir)
	if err != nil {
		w.release()
		return nil, err
	}
	src.release = w.release
	return src, nil
}

// resolveLayout picks the image ref.Tag names in the OCI layout at dir
// (the only image when no tag is given), and this host's platform when
// that is an index.
func resolveLayout(ref Reference, dir string) (*source, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read oci layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read oci layout: %w", err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		rn := d.Annotations[refNameAnnotation]
		if ref.Tag == "" || rn == ref.Tag || strings.HasSuffix(rn, ":"+ref.Tag) {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && ref.Tag != "":
		return nil, fmt.Errorf("oci layout %s has no image tagged %q: %w", ref.Path, ref.Tag, ErrNotFound)
	case len(found) != 1 && ref.Transport == OCIArchive:
		return nil, fmt.Errorf("oci archive %s holds %d images; peapod takes archives of one image", ref.Path, len(found))
	case len(found) != 1:
		return nil, fmt.Errorf("oci layout %s holds %d images; name one: oci:%s:TAG", ref.Path, len(found), ref.Path)
	}
	d := found[0]
	src := &source{from: ref.Path, names: []string{ref.String()}, release: func() {}}
	if rn := d.Annotations[refNameAnnotation]; strings.ContainsAny(rn, "/:") {
		if r, err := ParseReference(rn); err == nil && r.Transport == Registry {
			src.names = append(src.names, r.String())
		}
	}
	if src.img, err = layoutImage(idx, d); err != nil {
		return nil, fmt.Errorf("read oci layout %s: %w", ref.Path, err)
	}
	return src, nil
}

// layoutImage returns the image d describes, choosing this host's
// platform from an index.
func layoutImage(idx v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	if !d.MediaType.IsIndex() {
		return idx.Image(d.Digest)
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	im, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := hostPlatform()
	for _, m := range im.Manifests {
		if platformMatches(m.Platform, want) {
			return child.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("no image for platform %s in index %s", want, d.Digest)
}
