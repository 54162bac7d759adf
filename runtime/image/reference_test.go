package image

import (
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in        string
		transport Transport
		name      string
		path, tag string
		floating  bool
	}{
		{in: "busybox", transport: Registry, name: "docker.io/library/busybox:latest", floating: true},
		{in: "busybox:1.36", transport: Registry, name: "docker.io/library/busybox:1.36"},
		{in: "docker.io/library/busybox:latest", transport: Registry, name: "docker.io/library/busybox:latest", floating: true},
		{in: "docker://nginx:1.27", transport: Registry, name: "docker.io/library/nginx:1.27"},
		{in: "bitnami/redis:7", transport: Registry, name: "docker.io/bitnami/redis:7"},
		{in: "ghcr.io/org/app:v3", transport: Registry, name: "ghcr.io/org/app:v3"},
		{in: "127.0.0.1:5000/team/svc", transport: Registry, name: "127.0.0.1:5000/team/svc:latest", floating: true},
		{in: "localhost:5000/svc:v1", transport: Registry, name: "localhost:5000/svc:v1"},
		{
			in:        "registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64),
			transport: Registry, name: "registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64),
		},
		{in: "rootfs:/var/lib/peapod/rootfs/busybox", transport: RootFS, path: "/var/lib/peapod/rootfs/busybox"},
		{in: "docker-archive:/tmp/a:b.tar", transport: DockerArchive, path: "/tmp/a:b.tar"},
		{in: "oci-archive:/srv/img.tar", transport: OCIArchive, path: "/srv/img.tar"},
		{in: "oci:/srv/layout", transport: OCILayout, path: "/srv/layout"},
		{in: "oci:/srv/layout:v2", transport: OCILayout, path: "/srv/layout", tag: "v2"},
	} {
		r, err := ParseReference(tc.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tc.in, err)
			continue
		}
		if r.Transport != tc.transport || r.Name != tc.name || r.Path != tc.path || r.Tag != tc.tag {
			t.Errorf("ParseReference(%q) = %+v, want transport %s name %q path %q tag %q", tc.in, r, tc.transport, tc.name, tc.path, tc.tag)
		}
		if got := r.Floating(); got != tc.floating {
			t.Errorf("ParseReference(%q).Floating() = %v, want %v", tc.in, got, tc.floating)
		}
		if tc.transport != Registry && r.String() != tc.in {
			t.Errorf("ParseReference(%q).String() = %q", tc.in, r.String())
		}
		if (r.Registry() != nil) != (tc.transport == Registry) {
			t.Errorf("ParseReference(%q).Registry() = %v", tc.in, r.Registry())
		}
	}
}

func TestParseReferenceErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"Busybox", "invalid image reference"},
		{"busybox:", "invalid image reference"},
		{"busybox@sha256:abc", "invalid image reference"},
		{"rootfs:relative/dir", "absolute and clean"},
		{"rootfs:/a/../b", "absolute and clean"},
		{"rootfs:/", "root directory"},
		{"oci-archive:", "needs a path"},
		{"oci:/layout:", "empty tag"},
		{"containers-storage:busybox", "unknown transport"},
		{"tarball:/tmp/x.tar", "unknown transport"},
	} {
		_, err := ParseReference(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseReference(%q) error = %v, want one containing %q", tc.in, err, tc.want)
		}
	}
}
