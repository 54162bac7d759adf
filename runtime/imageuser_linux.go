package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// execUser is who a container's command runs as.
type execUser struct {
	UID, GID uint32
	// Groups are the supplementary groups: the user's from the image's
	// /etc/group, then the pod's supplementalGroups.
	Groups []uint32
}

// resolveUser computes the container's user as containerd and runc do:
// the image's User ("uid", "name", "uid:gid", "name:group"; names looked
// up in the image's /etc/passwd and /etc/group), where runAsUser replaces
// the user (and with it the image's group: the group is then the user's
// in /etc/passwd) and runAsGroup the group. A user named implicitly gets
// the supplementary groups /etc/group gives it. layers are the image's,
// base first.
func resolveUser(layers []string, imageUser string, pod *corev1.Pod, c *corev1.Container) (*execUser, error) {
	uid, gid := runAsIDs(pod, c)
	spec := imageUser
	if uid != nil {
		spec = strconv.FormatInt(*uid, 10)
	}
	if gid != nil {
		u, _, _ := strings.Cut(spec, ":")
		spec = u + ":" + strconv.FormatInt(*gid, 10)
	}
	passwd, err := readImageFile(layers, "etc/passwd")
	if err != nil {
		return nil, createError(fmt.Errorf("container %s: read the image's /etc/passwd: %w", c.Name, err))
	}
	group, err := readImageFile(layers, "etc/group")
	if err != nil {
		return nil, createError(fmt.Errorf("container %s: read the image's /etc/group: %w", c.Name, err))
	}
	eu, err := user.GetExecUser(spec, nil, readerOrNil(passwd), readerOrNil(group))
	if err != nil {
		return nil, createError(fmt.Errorf("container %s: user %q: %w", c.Name, spec, err))
	}
	out := &execUser{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	for _, g := range eu.Sgids {
		out.Groups = append(out.Groups, uint32(g))
	}
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, g := range sc.SupplementalGroups {
			out.Groups = append(out.Groups, uint32(g))
		}
	}
	return out, nil
}

// runAsIDs returns runAsUser and runAsGroup: the container's
// securityContext wins over the pod's; nil when neither sets one.
func runAsIDs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64) {
	if sc := pod.Spec.SecurityContext; sc != nil {
		uid, gid = sc.RunAsUser, sc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

// readerOrNil hands GetExecUser nil for a missing file, which it treats
// as "no entries" (numeric IDs still work, names do not).
func readerOrNil(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// maxUserFile bounds what is read of /etc/passwd or /etc/group.
const maxUserFile = 4 << 20

// readImageFile reads path (relative, e.g. "etc/passwd") from the image
// that layers (base first) stack into, as overlay would show it: the top
// layer that has it wins, and a whiteout or an opaque directory on the
// way hides it and everything below. It returns nil, nil when the image
// has no such file.
//
// The layers belong to an image that may be hostile, so nothing is read
// through the merged view or by a plain path: each layer is opened as a
// root and every lookup stays inside it (RESOLVE_IN_ROOT: "..", absolute
// symlinks and magic links cannot leave the layer). A symlink resolves
// within its own layer only, which covers the /etc/passwd of images.
func readImageFile(layers []string, path string) ([]byte, error) {
	parts := strings.Split(path, "/")
	for i := len(layers) - 1; i >= 0; i-- {
		data, found, stop, err := readLayerFile(layers[i], parts)
		if err != nil || found || stop {
			return data, err
		}
	}
	return nil, nil
}

// readLayerFile looks for parts in one layer. stop reports that the layer
// hides the file from the layers below.
func readLayerFile(layer string, parts []string) (data []byte, found, stop bool, err error) {
	root, err := os.OpenFile(layer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, false, err
	}
	defer root.Close()
	// hides is set once a directory on the way is opaque: the layers
	// below cannot provide the file.
	hides := false
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		var st unix.Stat_t
		err := unix.Fstatat(int(root.Fd()), p, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
			return nil, false, hides, nil
		case err != nil:
			return nil, false, false, fmt.Errorf("layer %s: %w", layer, err)
		case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0:
			return nil, false, true, nil // whiteout
		case i < len(parts)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			// Not a directory: it hides the directories below; a
			// symlink is followed within this layer.
			if st.Mode&unix.S_IFMT != unix.S_IFLNK {
				return nil, false, true, nil
			}
			data, err := readInRoot(root, strings.Join(parts, "/"))
			if err != nil {
				return nil, false, false, fmt.Errorf("layer %s: %w", layer, err)
			}
			return data, data != nil, true, nil
		case i == len(parts)-1:
			data, err := readInRoot(root, p)
			if err != nil {
				return nil, false, false, fmt.Errorf("layer %s: %w", layer, err)
			}
			return data, true, true, nil
		case opaque(root, p):
			hides = true
		}
	}
	return nil, false, hides, nil
}

// opaque reports whether directory p of root is an overlay opaque one.
func opaque(root *os.File, p string) bool {
	fd, err := unix.Openat2(int(root.Fd()), p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	buf := make([]byte, 1)
	n, err := unix.Fgetxattr(fd, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

func readInRoot(root *os.File, p string) ([]byte, error) {
	fd, err := unix.Openat2(int(root.Fd()), p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return io.ReadAll(io.LimitReader(f, maxUserFile))
}
