package image

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport says where an image comes from, with the names podman and
// skopeo give them.
type Transport string

// The transports peapod understands. An image reference without a
// transport prefix names a registry image.
const (
	// Registry is a reference such as busybox, ghcr.io/org/app:v1 or
	// 127.0.0.1:5000/team/svc@sha256:...
	Registry Transport = "docker"
	// DockerArchive is a tar file made by `docker save`.
	DockerArchive Transport = "docker-archive"
	// OCIArchive is a tar file of an OCI image layout.
	OCIArchive Transport = "oci-archive"
	// OCILayout is an OCI image layout directory, optionally with a tag
	// naming one of its images.
	OCILayout Transport = "oci"
	// RootFS is an unpacked root filesystem directory used as the only,
	// read-only layer; it has no config.
	RootFS Transport = "rootfs"
)

// fileTransports are written TRANSPORT:/absolute/path in a manifest.
var fileTransports = []Transport{DockerArchive, OCIArchive, OCILayout, RootFS}

// Reference is a parsed image reference. The zero value is not valid.
type Reference struct {
	Transport Transport
	// Name is, for a registry image, the normalised reference as
	// containerd spells it: docker.io/library/busybox:latest, or
	// registry/repo@sha256:... when pinned by digest.
	Name string
	// Path is the absolute, clean path of a file transport's archive or
	// directory.
	Path string
	// Tag is the tag an oci: reference selects ("" for the layout's only
	// image).
	Tag string

	// reg is the parsed registry reference.
	reg name.Reference
}

// dockerHubAPI is how go-containerregistry names Docker Hub; users and
// containerd call it docker.io.
const dockerHubAPI = "index.docker.io"

// ParseReference parses an image reference as a manifest's `image` field
// holds it: a registry reference, decoded as docker and containerd do
// (busybox is docker.io/library/busybox:latest), or TRANSPORT:/path for
// the file transports. It does no I/O.
func ParseReference(s string) (Reference, error) {
	if s == "" {
		return Reference{}, errors.New("empty image reference")
	}
	if t, rest, ok := strings.Cut(s, ":"); ok {
		switch {
		case isFileTransport(Transport(t)):
			return parseFileReference(Transport(t), rest)
		case t == string(Registry) && strings.HasPrefix(rest, "//"):
			// skopeo's spelling of a registry image: docker://busybox.
			s = rest[2:]
		case unsupportedTransports[t] || (looksLikeTransport(t) && strings.HasPrefix(rest, "/")):
			return Reference{}, fmt.Errorf("image %q: unknown transport %q; use %s", s, t, SupportedTransports())
		}
	}
	ref, err := name.ParseReference(s, name.StrictValidation)
	if err != nil {
		// Strict validation refuses a missing tag; a missing tag means
		// latest, as in docker.
		ref, err = name.ParseReference(s)
	}
	if err != nil {
		return Reference{}, fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	return Reference{Transport: Registry, Name: familiar(ref.Name()), reg: ref}, nil
}

// unsupportedTransports are podman's and skopeo's other transports, named
// in the error so a user knows the reference was understood.
var unsupportedTransports = map[string]bool{
	"docker-daemon": true, "containers-storage": true, "dir": true, "ostree": true, "sif": true,
}

// looksLikeTransport tells a transport word (lower-case letters and
// dashes) from a registry host, which has a dot or a port, or is localhost.
func looksLikeTransport(t string) bool {
	if t == "" || t == "localhost" {
		return false
	}
	for _, r := range t {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

func isFileTransport(t Transport) bool {
	for _, ft := range fileTransports {
		if t == ft {
			return true
		}
	}
	return false
}

// parseFileReference parses the part after "TRANSPORT:". Only oci: takes a
// ":TAG" suffix; archive paths are taken whole, so they may contain colons.
func parseFileReference(t Transport, rest string) (Reference, error) {
	p, tag := rest, ""
	if t == OCILayout {
		if i := strings.LastIndex(rest, ":"); i >= 0 {
			p, tag = rest[:i], rest[i+1:]
			if tag == "" {
				return Reference{}, fmt.Errorf("image %s:%s: empty tag after the last colon", t, rest)
			}
		}
	}
	switch {
	case p == "":
		return Reference{}, fmt.Errorf("image %s: needs a path: %s:/absolute/path", t, t)
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return Reference{}, fmt.Errorf("image %s:%s: the path must be absolute and clean", t, rest)
	case p == "/":
		return Reference{}, fmt.Errorf("image %s:%s: the host's root directory cannot be an image", t, rest)
	}
	return Reference{Transport: t, Path: p, Tag: tag}, nil
}

// familiar spells Docker Hub as docker.io, the way users and containerd
// write it.
func familiar(ref string) string {
	if rest, ok := strings.CutPrefix(ref, dockerHubAPI+"/"); ok {
		return "docker.io/" + rest
	}
	return ref
}

// String returns the reference in the form ParseReference reads.
func (r Reference) String() string {
	switch {
	case r.Transport == Registry:
		return r.Name
	case r.Tag != "":
		return string(r.Transport) + ":" + r.Path + ":" + r.Tag
	default:
		return string(r.Transport) + ":" + r.Path
	}
}

// Registry returns the go-containerregistry reference of a registry image,
// nil for the file transports.
func (r Reference) Registry() name.Reference {
	return r.reg
}

// Floating reports whether the reference may point at different images over
// time: a registry reference with no tag, or the tag latest, and no
// digest. Kubernetes defaults imagePullPolicy to Always for those and to
// IfNotPresent for the rest.
func (r Reference) Floating() bool {
	tag, ok := r.reg.(name.Tag)
	return ok && tag.TagStr() == "latest"
}

// SupportedTransports lists the prefixes a manifest's image may have, for
// error messages.
func SupportedTransports() string {
	names := make([]string, len(fileTransports))
	for i, t := range fileTransports {
		names[i] = string(t) + ":"
	}
	return "a registry reference (busybox, ghcr.io/org/app:v1, host:port/repo@sha256:...) or " + strings.Join(names, ", ")
}
