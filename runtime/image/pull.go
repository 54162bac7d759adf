package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// PullOptions are one pull's own settings. The zero value is a plain
// pull.
type PullOptions struct {
	// Keychain holds extra credentials (a pod's pull secrets), tried
	// before the auth file's; nil: none.
	Keychain authn.Keychain
	// Progress, when not nil, is called from the pull's goroutines (one
	// at a time per layer, concurrently across layers) as layer bytes
	// arrive.
	Progress func(Progress)
}

// Progress reports one layer's download: Done of Total bytes (Total is 0
// when unknown, as for archives).
type Progress struct {
	Layer       string
	Done, Total int64
}

// maxParallelLayers is how many layers of one image download and unpack
// at once: containerd's default for max_concurrent_downloads.
const maxParallelLayers = 3

// Pull brings the image ref names into the store and returns it: from its
// registry (or a mirror), or from a docker-archive, oci-archive or oci
// layout. Concurrent pulls of one reference in this process share one
// download, which stops only when all of them have given up. Layers the
// store already has are not fetched again. On failure nothing of the pull
// is left behind but layers other images may use.
func (s *Store) Pull(ctx context.Context, ref Reference, o PullOptions) (*Image, error) {
	if ref.Transport == RootFS || ref.Transport == "" {
		return nil, fmt.Errorf("pull %s: a %s: image is a directory, not something to pull", ref, RootFS)
	}
	start := time.Now()
	v, err := s.pulls.do(ctx, ref.String(), func(ctx context.Context) (any, error) {
		return s.pull(ctx, ref, o)
	})
	s.met.observe(start, err)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	// Every caller joined to the pull owns its copy.
	return v.(*Image).clone(), nil
}

func (s *Store) pull(ctx context.Context, ref Reference, o PullOptions) (*Image, error) {
	src, err := s.resolve(ctx, ref, o)
	if err != nil {
		return nil, err
	}
	defer src.release()
	s.log.Info("pulling image", "image", ref.String(), "from", src.from)
	// A layer can vanish between ingest and commit if a garbage
	// collection in another process finds it unnamed; ingest again then.
	for range 3 {
		img, err := s.ingest(ctx, src, o)
		if !errors.Is(err, errLayerGone) {
			if err == nil {
				s.log.Info("image pulled", "image", ref.String(), "id", img.ID, "size", img.Size)
			}
			return img, err
		}
	}
	return nil, errLayerGone
}

var errLayerGone = errors.New("a layer was removed by a concurrent garbage collection while the image was pulled; pull again")

// source is a resolved image: where its bytes come from and what the
// store will call it.
type source struct {
	img         v1.Image
	from        string
	names       []string
	repoDigests []string
	// compressed: the layers are read as the registry stores them and
	// checked against the manifest's digest and size; else (archives)
	// they are read uncompressed and checked against the diffIDs only.
	compressed bool
	release    func()
}

func (s *Store) resolve(ctx context.Context, ref Reference, o PullOptions) (*source, error) {
	switch ref.Transport {
	case Registry:
		return s.resolveRemote(ctx, ref, o)
	case DockerArchive:
		return s.resolveDockerArchive(ref)
	case OCIArchive:
		return s.resolveOCIArchive(ctx, ref)
	case OCILayout:
		return resolveLayout(ref, ref.Path)
	}
	return nil, fmt.Errorf("unknown transport %q; use %s", ref.Transport, SupportedTransports())
}

func (s *Store) resolveRemote(ctx context.Context, ref Reference, o PullOptions) (*source, error) {
	keychain := s.reg.keychain
	if o.Keychain != nil {
		keychain = authn.NewMultiKeychain(o.Keychain, keychain)
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain),
		remote.WithTransport(&s.reg),
		remote.WithPlatform(hostPlatform()),
		remote.WithUserAgent("peapod"),
	}
	cands, err := s.reg.candidates(ref.Registry())
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, c := range cands {
		desc, err := remote.Get(c, opts...)
		if err == nil {
			var img v1.Image
			if img, err = desc.Image(); err == nil {
				return &source{
					img:         img,
					from:        c.Context().RegistryStr(),
					names:       []string{ref.String()},
					repoDigests: []string{familiar(ref.Registry().Context().Name()) + "@" + desc.Digest.String()},
					compressed:  true,
					release:     func() {},
				}, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, err)
		if len(cands) > 1 {
			s.log.Warn("image pull from registry failed", "image", ref.String(), "registry", c.Context().RegistryStr(), "err", err)
		}
	}
	return nil, errors.Join(errs...)
}

// ingest brings src's layers and config into the store and records the
// image.
func (s *Store) ingest(ctx context.Context, src *source, o PullOptions) (*Image, error) {
	rawCfg, err := src.img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	cfgName, err := src.img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	if got := sha256Hex(rawCfg); got != cfgName.Hex {
		return nil, fmt.Errorf("image config has digest sha256:%s, the manifest says %s", got, cfgName)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	rawManifest, err := src.img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	layers, err := src.img.Layers()
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	diffIDs := cf.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return nil, fmt.Errorf("image config lists %d layers, the manifest %d", len(diffIDs), len(layers))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelLayers)
	for i, l := range layers {
		g.Go(func() error { return s.ensureLayer(gctx, l, diffIDs[i], src.compressed, o.Progress) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	r := &record{
		ID:          cfgName.String(),
		RepoDigests: src.repoDigests,
		Manifest:    "sha256:" + sha256Hex(rawManifest),
		Config: Config{
			Entrypoint: cf.Config.Entrypoint,
			Cmd:        cf.Config.Cmd,
			Env:        cf.Config.Env,
			WorkingDir: cf.Config.WorkingDir,
			User:       cf.Config.User,
		},
		Created: cf.Created.Time,
	}
	for _, d := range diffIDs {
		r.DiffIDs = append(r.DiffIDs, d.String())
	}
	return s.commit(r, src.names, rawCfg, rawManifest)
}

// commit records the image, keeping the names, repo digests and last use
// of an existing record of it.
func (s *Store) commit(r *record, names []string, rawCfg, rawManifest []byte) (*Image, error) {
	var img *Image
	err := s.locked(func() error {
		for _, d := range r.DiffIDs {
			if !s.haveLayer(d) {
				return errLayerGone
			}
		}
		for _, b := range [][]byte{rawCfg, rawManifest} {
			if err := s.saveBlob(b); err != nil {
				return err
			}
		}
		if old, err := s.find(r.ID); err == nil {
			r.Names = old.Names
			r.LastUsed = old.LastUsed
			for _, d := range old.RepoDigests {
				if !slices.Contains(r.RepoDigests, d) {
					r.RepoDigests = append(r.RepoDigests, d)
				}
			}
		}
		if err := s.claimNames(r, names); err != nil {
			return err
		}
		var err error
		img, err = s.image(r)
		return err
	})
	return img, err
}

func (s *Store) saveBlob(b []byte) error {
	p := filepath.Join(s.root, "blobs", "sha256", sha256Hex(b))
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := writeFileAtomic(p, b); err != nil {
		return fmt.Errorf("save blob: %w", err)
	}
	return nil
}

func (s *Store) haveLayer(diffID string) bool {
	_, err := os.Stat(filepath.Join(s.layerDir(diffID), "meta.json"))
	return err == nil
}

// ensureLayer makes sure the layer with diffID is unpacked in the store,
// fetching it once however many pulls need it at the same time.
func (s *Store) ensureLayer(ctx context.Context, l v1.Layer, diffID v1.Hash, compressed bool, progress func(Progress)) error {
	if s.haveLayer(diffID.String()) {
		return nil
	}
	for {
		_, err := s.layers.do(ctx, diffID.String(), func(ctx context.Context) (any, error) {
			if s.haveLayer(diffID.String()) {
				return nil, nil
			}
			return nil, s.fetchLayer(ctx, l, diffID, compressed, progress)
		})
		// The download this pull joined was another pull's, cancelled
		// with it: fetch the layer again, as this pull's own.
		if errors.Is(err, context.Canceled) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// fetchLayer downloads and unpacks a layer into a work directory, checks
// what it read against the manifest and the config, and only then renames
// it into layers/: a layer that fails a check is never seen.
func (s *Store) fetchLayer(ctx context.Context, l v1.Layer, diffID v1.Hash, compressed bool, progress func(Progress)) error {
	w, err := s.newWorkDir()
	if err != nil {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer w.release()
	size, err := s.unpackVerified(ctx, l, diffID, compressed, progress, filepath.Join(w.path, "fs"))
	if err == nil {
		var meta []byte
		meta, err = json.Marshal(layerMeta{Size: size})
		if err == nil {
			err = os.WriteFile(filepath.Join(w.path, "meta.json"), meta, 0o600)
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			err = fmt.Errorf("%w (the filesystem under %s is full; the partial layer was removed)", err, s.root)
		}
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	// Another process may have unpacked the same layer meanwhile: its
	// copy is as good as ours (both were verified against diffID).
	if err := os.Rename(w.path, s.layerDir(diffID.String())); err != nil && !s.haveLayer(diffID.String()) {
		return fmt.Errorf("layer %s: %w", diffID, err)
	}
	return nil
}

func (s *Store) unpackVerified(ctx context.Context, l v1.Layer, diffID v1.Hash, compressed bool, progress func(Progress), dir string) (int64, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, err
	}
	var want v1.Descriptor
	var rc io.ReadCloser
	var err error
	if compressed {
		if want.Digest, err = l.Digest(); err == nil {
			if want.Size, err = l.Size(); err == nil {
				rc, err = l.Compressed()
			}
		}
	} else {
		rc, err = l.Uncompressed()
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	raw := &digester{r: rc, h: sha256.New(), ctx: ctx, layer: diffID.String(), total: want.Size, progress: progress}
	var tarStream io.Reader = raw
	if compressed {
		d, err := decompress(raw)
		if err != nil {
			return 0, err
		}
		defer d.Close()
		tarStream = d
	}
	un := &digester{r: tarStream, h: sha256.New(), ctx: ctx}
	u, err := unpackLayer(un, dir)
	if err != nil {
		return 0, err
	}
	// Read what the tar reader left (end-of-archive padding) and the rest
	// of the compressed stream, so the digests cover every byte.
	if _, err := io.Copy(io.Discard, un); err != nil {
		return 0, err
	}
	if compressed {
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return 0, err
		}
		s.met.bytes.Add(float64(raw.n))
		if got := raw.sum(); raw.n != want.Size || got != want.Digest.Hex {
			return 0, fmt.Errorf("downloaded %d bytes with digest sha256:%s, the manifest says %d bytes with digest %s: the blob is truncated or corrupt", raw.n, got, want.Size, want.Digest)
		}
	}
	if got := un.sum(); got != diffID.Hex {
		return 0, fmt.Errorf("unpacked content has digest sha256:%s, the image config says %s", got, diffID)
	}
	if u.devices > 0 || u.xattrs > 0 {
		s.log.Info("layer unpacked without some entries", "layer", diffID.String(), "device_nodes_skipped", u.devices, "xattrs_dropped", u.xattrs)
	}
	return u.size, nil
}

// decompress returns the tar stream inside r: gzip, zstd or plain, told
// by the first bytes as containerd does, whatever the media type says.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// digester hashes and counts what is read through it, reports progress,
// and stops the read when ctx is done.
type digester struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	ctx      context.Context
	layer    string
	total    int64
	progress func(Progress)
}

func (d *digester) Read(p []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	if d.progress != nil && n > 0 {
		d.progress(Progress{Layer: d.layer, Done: d.n, Total: d.total})
	}
	return n, err
}

func (d *digester) sum() string {
	return hex.EncodeToString(d.h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
