package image

import "time"

// Image is an image ready to run: its unpacked layers and the parts of its
// config that decide how a container runs. Values returned by the store
// are copies the caller owns.
type Image struct {
	// ID is the digest of the image's config, "sha256:<hex>": what
	// `crictl images` shows as IMAGE ID. Empty for a rootfs: image.
	ID string
	// Names are the references (Reference.String()) that point at the
	// image.
	Names []string
	// RepoDigests are "registry/repo@sha256:<manifest digest>", the form
	// of a container status's imageID.
	RepoDigests []string
	// Layers are the absolute paths of the unpacked layer directories,
	// the base layer first (the order of the image's diff IDs; a layer
	// the image repeats is listed once, at its topmost place, as overlay
	// takes a directory once and the merged tree is the same). Each is in
	// overlay's format: whiteouts are 0/0 character devices, opaque
	// directories carry the trusted.overlay.opaque xattr.
	Layers []string
	Config Config
	// Size is the bytes the image's layers take on disk.
	Size int64
	// Created is the image config's creation time; zero when unknown.
	Created time.Time
	// LastUsed is when a container last started from the image, for
	// garbage collection; zero when never.
	LastUsed time.Time
}

// Config is what Kubernetes takes from an image's config.
type Config struct {
	Entrypoint []string
	Cmd        []string
	// Env holds NAME=value pairs, overridden by the container's env.
	Env        []string
	WorkingDir string
	// User is "uid", "uid:gid", "name" or "name:group", as in the image.
	User string
}
