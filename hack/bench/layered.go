package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeLayeredImage writes an OCI image layout at dir holding one image of
// the files under rootfs spread over n layers (every entry goes to one of
// them, directories to all, so each layer is whole), tagged "bench".
func writeLayeredImage(dir, rootfs string, n int) error {
	bufs := make([]*bytes.Buffer, n)
	tws := make([]*tar.Writer, n)
	for i := range bufs {
		bufs[i] = &bytes.Buffer{}
		tws[i] = tar.NewWriter(bufs[i])
	}
	i := 0
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == rootfs {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path, rootfs+"/")
		if fi.IsDir() {
			for _, tw := range tws {
				if err := writeEntry(tw, path, name, fi); err != nil {
					return err
				}
			}
			return nil
		}
		i = (i + 1) % n
		return writeEntry(tws[i], path, name, fi)
	})
	if err != nil {
		return err
	}
	img := empty.Image
	for i, tw := range tws {
		if err := tw.Close(); err != nil {
			return err
		}
		data := bufs[i].Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	if img, err = mutate.Config(img, v1.Config{Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "bench"}))
}

// writeEntry writes the file, directory or symlink at path into tw as
// name, owned by root.
func writeEntry(tw *tar.Writer, path, name string, fi fs.FileInfo) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = name, 0, 0, "", ""
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}
