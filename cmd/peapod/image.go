package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/peapod/peapod/agent"
	"github.com/peapod/peapod/runtime/image"
)

// imageFlags are the flags every `peapod image` subcommand takes: where
// the store is and how to reach registries, as the agent's flags say.
type imageFlags struct {
	root     string
	state    string
	insecure []string
	mirrors  []string
	authFile string
}

func (f *imageFlags) open() (*image.Store, error) {
	return image.Open(image.Options{
		Root:               filepath.Join(f.root, "images"),
		InsecureRegistries: f.insecure,
		Mirrors:            f.mirrors,
		AuthFile:           f.authFile,
		Log:                slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

func newImageCommand() *cobra.Command {
	f := &imageFlags{root: agent.DefaultRoot, state: agent.DefaultState}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the image store under --root: ls, pull, import, rm, prune",
		Long: "Manage the images under --root/images, the store the agent pulls into. Works whether\n" +
			"the agent runs or not: the store is locked for each change, never during a download.",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.root, "root", f.root, "the agent's --root directory; images live in ROOT/images")
	pf.StringVar(&f.state, "state", f.state, "the agent's --state directory, to ask it which images its pods use")
	pf.StringArrayVar(&f.insecure, "insecure-registry", nil, "HOST[:PORT] reached over plain HTTP or unverified TLS (repeatable; loopback always is)")
	pf.StringArrayVar(&f.mirrors, "registry-mirror", nil, "registry HOST[:PORT] tried before docker.io for docker.io images (repeatable, in order)")
	pf.StringVar(&f.authFile, "registry-auth-file", "", "docker config.json with registry credentials (default ~/.docker/config.json)")
	cmd.AddCommand(newImageLsCommand(f), newImagePullCommand(f), newImageImportCommand(f), newImageRmCommand(f), newImagePruneCommand(f))
	return cmd
}

func newImageLsCommand(f *imageFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the images in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			defer s.Close()
			list, err := s.List()
			if err != nil {
				return err
			}
			switch output {
			case "":
				return image.PrintImages(os.Stdout, list, time.Now())
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "    ")
				return enc.Encode(list)
			}
			return fmt.Errorf("-o %q: want json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json; default a table")
	return cmd
}

func newImagePullCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry (or a docker-archive:, oci-archive:, oci: reference)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := image.ParseReference(args[0])
			if err != nil {
				return err
			}
			return pullAndReport(cmd.Context(), f, ref, nil)
		},
	}
}

// pullAndReport pulls ref with a progress display, tags it with name when
// given, and prints the result.
func pullAndReport(ctx context.Context, f *imageFlags, ref image.Reference, tag *image.Reference) error {
	s, err := f.open()
	if err != nil {
		return err
	}
	defer s.Close()
	p := newProgressPrinter(os.Stdout)
	img, err := s.Pull(ctx, ref, image.PullOptions{Progress: p.update})
	p.finish()
	if err != nil {
		return err
	}
	if tag != nil {
		if err := s.Tag(img.ID, *tag); err != nil {
			return err
		}
		img.Names = append(img.Names, tag.String())
	}
	fmt.Printf("%s: %s (%d layers, %s)\n", strings.Join(img.Names, ", "), img.ID, len(img.Layers), humanBytes(img.Size))
	return nil
}

// progressPrinter shows bytes per layer: on a terminal, one line per layer
// redrawn in place at most ten times a second; otherwise one plain line
// per layer when it is complete.
type progressPrinter struct {
	w   io.Writer
	tty bool

	mu     sync.Mutex
	order  []string
	layers map[string]image.Progress
	drawn  int
	last   time.Time
}

func newProgressPrinter(f *os.File) *progressPrinter {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return &progressPrinter{w: f, tty: err == nil, layers: map[string]image.Progress{}}
}

func (p *progressPrinter) update(u image.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.layers[u.Layer]; !ok {
		p.order = append(p.order, u.Layer)
	}
	p.layers[u.Layer] = u
	complete := u.Total > 0 && u.Done == u.Total
	switch {
	case !p.tty && complete:
		fmt.Fprintf(p.w, "%s: %s downloaded\n", shortLayer(u.Layer), humanBytes(u.Done))
	case p.tty && (complete || time.Since(p.last) > 100*time.Millisecond):
		p.redraw()
	}
}

func (p *progressPrinter) redraw() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn) // back to the first line
	}
	for _, l := range p.order {
		u := p.layers[l]
		total := "?"
		if u.Total > 0 {
			total = humanBytes(u.Total)
		}
		fmt.Fprintf(p.w, "\x1b[2K%s: %s / %s\n", shortLayer(l), humanBytes(u.Done), total)
	}
	p.drawn = len(p.order)
	p.last = time.Now()
}

func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && len(p.order) > 0 {
		p.redraw()
	}
}

func shortLayer(diffID string) string {
	if h, ok := strings.CutPrefix(diffID, "sha256:"); ok && len(h) > 12 {
		return h[:12]
	}
	return diffID
}

func humanBytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func newImageImportCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE [NAME]",
		Short: "Import a docker-archive or oci-archive tar (detected), or an OCI layout directory",
		Long: "Import FILE into the store: a `docker save` tar, an OCI archive or an OCI layout directory.\n" +
			"The image is named after FILE (docker-archive:/abs/FILE, as a manifest would write it),\n" +
			"after the tags the archive carries, and after NAME when given.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := archiveReference(args[0])
			if err != nil {
				return err
			}
			var tag *image.Reference
			if len(args) == 2 {
				t, err := image.ParseReference(args[1])
				if err != nil {
					return err
				}
				if t.Transport != image.Registry {
					return fmt.Errorf("name %q: want a registry-style name such as example.com/app:v1", args[1])
				}
				tag = &t
			}
			return pullAndReport(cmd.Context(), f, ref, tag)
		},
	}
}

// archiveReference tells a docker-archive (manifest.json at the top) from
// an oci-archive (oci-layout, index.json) by the tar's names; a directory
// is an OCI layout.
func archiveReference(file string) (image.Reference, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return image.Reference{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return image.Reference{}, err
	}
	if fi.IsDir() {
		return image.ParseReference("oci:" + abs)
	}
	fh, err := os.Open(abs)
	if err != nil {
		return image.Reference{}, err
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	for {
		h, err := tr.Next()
		if err != nil {
			return image.Reference{}, fmt.Errorf("%s: not a docker-archive or oci-archive tar (no manifest.json or oci-layout): %w", file, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			return image.ParseReference("docker-archive:" + abs)
		case "oci-layout", "index.json":
			return image.ParseReference("oci-archive:" + abs)
		}
	}
}

func newImageRmCommand(f *imageFlags) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm REF...",
		Short: "Remove image names; an image goes with its last name, its layers when no image needs them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, refs []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			defer s.Close()
			var inUse func(string) bool
			if !force {
				inUse = imagesInUse(cmd.Context(), f, s)
			}
			var errs []error
			for _, r := range refs {
				img, err := s.Get(r)
				if err == nil && inUse != nil && inUse(img.ID) {
					err = fmt.Errorf("image %s (%s) may be in use by a pod; --force removes it anyway", r, img.ID)
				}
				if err == nil {
					err = s.Remove(r)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Printf("removed %s\n", r)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even an image a pod may be using")
	return cmd
}

func newImagePruneCommand(f *imageFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove every image no pod uses, and the layers no image needs",
		Long: "Remove every image no pod uses. The agent, when it answers on --state, says which images\n" +
			"its pods use. When it does not, every image a container started from since the host booted\n" +
			"counts as in use: such a container may still run without its agent.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.open()
			if err != nil {
				return err
			}
			defer s.Close()
			freed, err := s.Prune(cmd.Context(), imagesInUse(cmd.Context(), f, s))
			fmt.Printf("freed %s\n", humanBytes(freed))
			return err
		},
	}
}

// imagesInUse says which images pods may use. If the agent answers, the
// images its pods name (spec) or run (status imageID); otherwise every
// image used since the host booted, since containers survive their
// agent but not a reboot.
func imagesInUse(ctx context.Context, f *imageFlags, s *image.Store) func(id string) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := (&agent.Client{StateDir: f.state}).ListPods(ctx)
	if err != nil {
		boot := bootTime()
		fmt.Fprintf(os.Stderr, "peapod: %v\npeapod: keeping every image used since the host booted (%s)\n", err, boot.Format(time.RFC3339))
		images, _ := s.List()
		return func(id string) bool {
			i := slices.IndexFunc(images, func(img *image.Image) bool { return img.ID == id })
			return i < 0 || !images[i].LastUsed.Before(boot)
		}
	}
	used := map[string]bool{}
	for _, p := range list.Items {
		var refs []string
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			refs = append(refs, c.Image)
		}
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			refs = append(refs, cs.ImageID)
		}
		for _, r := range refs {
			if img, err := s.Get(r); err == nil {
				used[img.ID] = true
			}
		}
	}
	return func(id string) bool { return used[id] }
}

// bootTime reads btime from /proc/stat; the zero time (everything counts
// as used since boot) if it cannot.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(sec, 0)
			}
		}
	}
	return time.Time{}
}
