package image

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/duration"
)

// PrintImages writes images as `docker images --digests` does, one line
// per name: REPOSITORY TAG DIGEST SIZE CREATED. DIGEST is the manifest
// digest the image was pulled by, or its ID when it has none (archives).
func PrintImages(w io.Writer, images []*Image, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE\tCREATED")
	type row struct{ repo, tag, digest, size, created string }
	var rows []row
	for _, img := range images {
		size, created := humanSize(img.Size), "<unknown>"
		if !img.Created.IsZero() {
			created = duration.HumanDuration(now.Sub(img.Created)) + " ago"
		}
		names := img.Names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			repo, tag := repoTag(n)
			rows = append(rows, row{repo, tag, shortDigest(img, repo), size, created})
		}
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.repo+":"+a.tag, b.repo+":"+b.tag) })
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.repo, r.tag, r.digest, r.size, r.created)
	}
	return tw.Flush()
}

// repoTag splits a name into repository and tag as docker shows them;
// a file transport's name is all repository.
func repoTag(n string) (repo, tag string) {
	if n == "" {
		return "<none>", "<none>"
	}
	ref, err := ParseReference(n)
	if err != nil || ref.Transport != Registry {
		return n, "<none>"
	}
	tag = "<none>"
	if t, ok := ref.Registry().(name.Tag); ok {
		tag = t.TagStr()
	}
	return familiar(ref.Registry().Context().Name()), tag
}

// shortDigest is the first 12 hex digits of repo's repo digest, or of the
// image ID.
func shortDigest(img *Image, repo string) string {
	d := img.ID
	for _, rd := range img.RepoDigests {
		if r, dg, ok := strings.Cut(rd, "@"); ok && r == repo {
			d = dg
		}
	}
	if hex, ok := strings.CutPrefix(d, "sha256:"); ok && len(hex) >= 12 {
		return "sha256:" + hex[:12]
	}
	return d
}

// humanSize prints bytes in SI units, as docker does.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.3g%s", f, []string{"B", "kB", "MB", "GB", "TB"}[i])
}
