package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/sandbox"
)

// ImageResolver turns a container's image reference into a root filesystem
// directory on the host.
type ImageResolver interface {
	// Resolve returns the image's root directory. A reference the user must
	// fix is a *reconcile.StartError.
	Resolve(ctx context.Context, image string) (string, error)
}

// rootfsPrefix marks an image that is a directory on the host.
const rootfsPrefix = "rootfs:"

// DirImages resolves `rootfs:/abs/path` images: the directory must exist.
type DirImages struct{}

// Resolve implements ImageResolver.
func (DirImages) Resolve(_ context.Context, image string) (string, error) {
	dir, ok := strings.CutPrefix(image, rootfsPrefix)
	if !ok || !filepath.IsAbs(dir) {
		return "", createError(fmt.Errorf("image %q: only rootfs:/absolute/path images are supported", image))
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", createError(fmt.Errorf("image %q: %w", image, err))
	}
	if !fi.IsDir() {
		return "", createError(fmt.Errorf("image %q: %s is not a directory", image, dir))
	}
	return dir, nil
}

func createError(err error) error {
	return &reconcile.StartError{Reason: "CreateContainerError", Err: err}
}

// specInput is what buildSpec translates, gathered by StartContainer.
type specInput struct {
	pod    *corev1.Pod
	c      *corev1.Container
	req    reconcile.StartRequest
	rootfs string
	// dir is the attempt's directory on disk (overlay upper and work).
	dir     string
	userNS  *container.IDMap
	sandbox *sandbox.Sandbox
	// volumes maps a pod volume name to its host path (emptyDir and
	// hostPath sources, already prepared).
	volumes map[string]string
}

// buildSpec translates a Kubernetes container into a container.Spec. It
// touches nothing on the host: volumes are prepared by the caller.
func buildSpec(in *specInput) (*container.Spec, error) {
	env, err := resolveEnv(in.pod, in.c, in.req.PodIPs)
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, len(in.c.Command)+len(in.c.Args))
	for _, a := range append(append([]string(nil), in.c.Command...), in.c.Args...) {
		args = append(args, expand(a, env.lookup))
	}
	if len(args) == 0 {
		return nil, configError(in.c, "no command: a rootfs image has no entrypoint, set command")
	}
	mounts, err := containerMounts(in)
	if err != nil {
		return nil, err
	}
	uid, gid := runAs(in.pod, in.c)
	spec := &container.Spec{
		ID:     containerID(in.pod.UID, in.c.Name, in.req.Attempt),
		Args:   args,
		Env:    env.environ(),
		Cwd:    in.c.WorkingDir,
		UID:    uid,
		GID:    gid,
		Lower:  []string{in.rootfs},
		Dir:    in.dir,
		UserNS: in.userNS,
		NetNS:  in.sandbox.NetNS,
		IPCNS:  in.sandbox.IPCNS,
		UTSNS:  in.sandbox.UTSNS,
		Mounts: mounts,
	}
	if sc := in.c.SecurityContext; sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		spec.NoNewPrivileges = true
	}
	if sc := in.pod.Spec.SecurityContext; sc != nil {
		for _, g := range sc.SupplementalGroups {
			spec.AdditionalGIDs = append(spec.AdditionalGIDs, uint32(g))
		}
	}
	return spec, nil
}

// runAs returns the container's user and group: the container's
// securityContext wins over the pod's; both default to 0.
func runAs(pod *corev1.Pod, c *corev1.Container) (uid, gid uint32) {
	var u, g *int64
	if sc := pod.Spec.SecurityContext; sc != nil {
		u, g = sc.RunAsUser, sc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			u = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			g = sc.RunAsGroup
		}
	}
	if u != nil {
		uid = uint32(*u)
	}
	if g != nil {
		gid = uint32(*g)
	}
	return uid, gid
}

// containerMounts returns the sandbox's files and mounts followed by the
// container's volume mounts (which may override them, as in kubelet).
func containerMounts(in *specInput) ([]container.Mount, error) {
	mounts := container.SandboxMounts(in.sandbox)
	for _, vm := range in.c.VolumeMounts {
		src, ok := in.volumes[vm.Name]
		if !ok {
			return nil, configError(in.c, fmt.Sprintf("volumeMount %q: no such volume, or its type is not supported", vm.Name))
		}
		mounts = append(mounts, container.Mount{
			Source: src, Destination: vm.MountPath, ReadOnly: vm.ReadOnly,
			SubPath: vm.SubPath,
		})
	}
	return mounts, nil
}

// containerID is the ContainerState.ID of one attempt.
func containerID(uid types.UID, name string, attempt int) string {
	return fmt.Sprintf("peapod://%s/%s/%d", uid, name, attempt)
}

// hostPathError is the kubelet-style failure of a hostPath type check.
func hostPathError(format string, a ...any) error {
	return createError(fmt.Errorf("hostPath type check failed: "+format, a...))
}

// checkHostPath verifies path against a hostPath volume's type, creating
// it for the OrCreate types, as kubelet's hostPath type checker does.
func checkHostPath(path string, t corev1.HostPathType) error {
	fi, err := os.Stat(path)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		return createError(fmt.Errorf("hostPath %s: %w", path, err))
	}
	switch t {
	case corev1.HostPathUnset:
		if missing {
			return createError(fmt.Errorf("hostPath %s does not exist (set type: DirectoryOrCreate or FileOrCreate to create it)", path))
		}
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if missing {
			return mkdirHostPath(path)
		}
		return wantMode(path, fi, os.ModeDir, "a directory")
	case corev1.HostPathDirectory:
		return wantExisting(path, fi, missing, os.ModeDir, "a directory")
	case corev1.HostPathFileOrCreate:
		if missing {
			return createHostFile(path)
		}
		return wantMode(path, fi, 0, "a file")
	case corev1.HostPathFile:
		return wantExisting(path, fi, missing, 0, "a file")
	case corev1.HostPathSocket:
		return wantExisting(path, fi, missing, os.ModeSocket, "a socket file")
	case corev1.HostPathCharDev:
		return wantExisting(path, fi, missing, os.ModeDevice|os.ModeCharDevice, "a character device")
	case corev1.HostPathBlockDev:
		return wantExisting(path, fi, missing, os.ModeDevice, "a block device")
	}
	return createError(fmt.Errorf("hostPath %s: unknown type %q", path, t))
}

func wantExisting(path string, fi os.FileInfo, missing bool, mode os.FileMode, what string) error {
	if missing {
		return hostPathError("%s is not %s", path, what)
	}
	return wantMode(path, fi, mode, what)
}

func wantMode(path string, fi os.FileInfo, mode os.FileMode, what string) error {
	if fi.Mode().Type() != mode {
		return hostPathError("%s is not %s", path, what)
	}
	return nil
}

func mkdirHostPath(path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return createError(fmt.Errorf("hostPath %s: %w", path, err))
	}
	// MkdirAll's mode is subject to the umask; kubelet's is exactly 0755.
	if err := os.Chmod(path, 0o755); err != nil {
		return createError(fmt.Errorf("hostPath %s: %w", path, err))
	}
	return nil
}

func createHostFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return createError(fmt.Errorf("hostPath %s: %w", path, err))
	}
	err = errors.Join(f.Chmod(0o644), f.Close())
	if err != nil {
		return createError(fmt.Errorf("hostPath %s: %w", path, err))
	}
	return nil
}
