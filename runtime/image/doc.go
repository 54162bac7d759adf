// Package image keeps container images on the host: it parses image
// references, pulls images from registries and imports archives into a
// content-addressed store under the agent's root, and hands the runtime an
// image's unpacked layers and config. It knows nothing of pods.
//
// # Registries
//
// Registry access is go-containerregistry's (remote, authn, name). A
// multi-arch index yields the image for linux and this binary's
// architecture (and the CPU's ARM variant). Registries are reached over
// verified TLS, except loopback ones (127.0.0.0/8, ::1, localhost), which
// docker and containerd also reach over plain HTTP or unverified TLS, and
// those listed in Options.InsecureRegistries. go-containerregistry on its
// own also tries plain HTTP for RFC 1918 addresses; the store's transport
// refuses that. Docker Hub images are tried on Options.Mirrors first, in
// order. Credentials come from PullOptions.Keychain, then from the docker
// config.json in Options.AuthFile (auths, credsStore, credHelpers).
//
// # Verification
//
// A layer is streamed from the registry through two digests, the
// compressed one checked with its size against the manifest, the
// uncompressed one against the config's diffID, into a work directory
// under tmp/; only when both match is it renamed into layers/. The
// config's digest is checked against the manifest. Compressed layer
// blobs are not kept (as containerd's discard_unpacked_layers): the
// unpacked layer is what the runtime uses, and a pull that needs the
// layer again finds it by diffID.
//
// # Unpacking for user-namespaced containers
//
// Layers are unpacked once per diffID, as root, with the owners, modes
// and times of the tar, in overlay's format (whiteouts are 0/0 character
// devices, opaque directories carry trusted.overlay.opaque=y), and shown
// to containers through an idmapped mount that maps host IDs 0-65535 to
// the pod's range. What the unpacker does with each kind of entry, and
// why, is on the unpacker type: in short, no path ever resolves outside
// the layer or through a symlink (openat2 RESOLVE_BENEATH|
// RESOLVE_NO_SYMLINKS), device nodes are skipped as containerd and moby do
// when they unpack in a user namespace, fifos are made, setuid/setgid bits are kept (the
// store is mode 0700, so no host user can reach a setuid file), and only
// user.* and security.capability xattrs are kept (trusted.* would let a
// layer forge overlay metadata). A tar bomb is bounded by the disk: a
// full disk fails the pull with ENOSPC named and the partial layer
// removed; archive/tar refuses headers over 1 MiB.
//
// # Concurrency
//
// A Store is safe for concurrent use, and several processes (the agent
// and the CLI) may share one root: changes to records happen under a
// flock on ROOT/lock, never held during a download; work in progress is
// in flock'd directories under tmp/, which Open sweeps when their owner
// is gone.
package image
