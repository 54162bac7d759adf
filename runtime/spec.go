package runtime

import (
	"cmp"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod/peapod/reconcile"
	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/sandbox"
)

func createError(err error) error {
	return &reconcile.StartError{Reason: "CreateContainerError", Err: err}
}

// specInput is what buildSpec translates, gathered by StartContainer.
type specInput struct {
	pod *corev1.Pod
	c   *corev1.Container
	req reconcile.StartRequest
	// image is the image the container runs: its layers and config.
	image *image.Image
	// user is who the command runs as, resolved from the image's user,
	// its /etc/passwd and /etc/group, and the securityContext.
	user *execUser
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
	var x expansion
	env, err := resolveEnv(in.pod, in.c, in.req.PodIPs, &x)
	if err != nil {
		return nil, err
	}
	cfg := in.image.Config
	args, err := commandLine(in.c, cfg, &x)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, createError(fmt.Errorf("container %s: no command specified: the image has no entrypoint or cmd, set command", in.c.Name))
	}
	mounts, err := containerMounts(in)
	if err != nil {
		return nil, err
	}
	spec := &container.Spec{
		ID:     containerID(in.pod.UID, in.c.Name, in.req.Attempt),
		Args:   args,
		Env:    withImageEnv(cfg.Env, env, in.c),
		Cwd:    cmp.Or(in.c.WorkingDir, cfg.WorkingDir),
		UID:    in.user.UID,
		GID:    in.user.GID,
		Lower:  in.image.Layers,
		Dir:    in.dir,
		UserNS: in.userNS,
		NetNS:  in.sandbox.NetNS,
		IPCNS:  in.sandbox.IPCNS,
		UTSNS:  in.sandbox.UTSNS,
		Mounts: mounts,
	}
	spec.AdditionalGIDs = in.user.Groups
	if sc := in.c.SecurityContext; sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		spec.NoNewPrivileges = true
	}
	if err := applySecurityContext(spec, in.pod, in.c, cfg.User); err != nil {
		return nil, err
	}
	return spec, nil
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
