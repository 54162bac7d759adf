package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// volumeOwner is the host UID and GID that own a pod's emptyDirs: the
// container root's, so that root in every container of the pod can use
// them (-1 keeps the agent's, for hostUsers pods).
type volumeOwner struct{ uid, gid int }

// prepareVolumes makes the host side of every volume of the pod that the
// container mounts and returns the host path of each. emptyDirs live under
// podRoot/volumes/<name>; a Memory emptyDir is a tmpfs mounted there once
// per pod. hostPath volumes are checked (or created) per their type.
func prepareVolumes(pod *corev1.Pod, c *corev1.Container, podRoot string, owner volumeOwner) (map[string]string, error) {
	used := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		used[vm.Name] = true
	}
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if !used[v.Name] {
			continue
		}
		var path string
		var err error
		switch {
		case v.EmptyDir != nil:
			path = filepath.Join(podRoot, "volumes", v.Name)
			err = prepareEmptyDir(path, v.EmptyDir, owner)
		case v.HostPath != nil:
			path = v.HostPath.Path
			t := corev1.HostPathUnset
			if v.HostPath.Type != nil {
				t = *v.HostPath.Type
			}
			err = checkHostPath(path, t)
		default:
			err = configError(c, fmt.Sprintf("volume %q: only emptyDir and hostPath volumes are supported", v.Name))
		}
		if err != nil {
			return nil, err
		}
		out[v.Name] = path
	}
	return out, nil
}

// prepareEmptyDir creates an emptyDir (0777, as kubelet makes them) owned
// by the pod's root, and mounts the tmpfs of a Memory one.
func prepareEmptyDir(path string, ed *corev1.EmptyDirVolumeSource, owner volumeOwner) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create emptyDir: %w", err)
	}
	if ed.Medium == corev1.StorageMediumMemory {
		if err := mountTmpfs(path, ed, owner); err != nil {
			return err
		}
	}
	// chown before chmod: a chmod first would briefly give the agent's
	// users a world-writable directory.
	if err := os.Lchown(path, owner.uid, owner.gid); err != nil {
		return fmt.Errorf("chown emptyDir: %w", err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		return fmt.Errorf("chmod emptyDir: %w", err)
	}
	return nil
}

// mountTmpfs mounts a Memory emptyDir's tmpfs on path unless it is there.
func mountTmpfs(path string, ed *corev1.EmptyDirVolumeSource, owner volumeOwner) error {
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return fmt.Errorf("check emptyDir mount: %w", err)
	}
	if mounted {
		return nil
	}
	data := "mode=0777"
	if ed.SizeLimit != nil && !ed.SizeLimit.IsZero() {
		data += ",size=" + strconv.FormatInt(ed.SizeLimit.Value(), 10)
	}
	if owner.uid >= 0 {
		data += fmt.Sprintf(",uid=%d,gid=%d", owner.uid, owner.gid)
	}
	if err := unix.Mount("tmpfs", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount Memory emptyDir on %s: %w", path, err)
	}
	return nil
}

// removeTree unmounts every mount at or under dir (Memory emptyDirs) and
// then removes dir. It never removes through a mount that stayed.
func removeTree(dir string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("list mounts under %s: %w", dir, err)
	}
	var errs []error
	// Newest first, so a mount stacked on another comes off before it.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i].Mountpoint, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
