package image

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPrintImages(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	id := "sha256:" + strings.Repeat("1", 64)
	images := []*Image{
		{
			ID:          id,
			Names:       []string{"docker.io/library/busybox:1.36", "docker-archive:/srv/bb.tar"},
			RepoDigests: []string{"docker.io/library/busybox@sha256:" + strings.Repeat("a", 64)},
			Size:        4_200_000,
			Created:     now.Add(-72 * time.Hour),
		},
		{ID: "sha256:" + strings.Repeat("2", 64), Size: 512},
	}
	var b bytes.Buffer
	if err := PrintImages(&b, images, now); err != nil {
		t.Fatal(err)
	}
	want := `REPOSITORY                   TAG      DIGEST                SIZE    CREATED
<none>                       <none>   sha256:222222222222   512B    <unknown>
docker-archive:/srv/bb.tar   <none>   sha256:111111111111   4.2MB   3d ago
docker.io/library/busybox    1.36     sha256:aaaaaaaaaaaa   4.2MB   3d ago
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("PrintImages (-want +got):\n%s", diff)
	}
}
