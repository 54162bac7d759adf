package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file away takes root")
	}
	if err := os.Lchown(path, uid, 0); err != nil {
		t.Fatal(err)
	}
}

// TestLoadChecksAncestors checks that every directory on the way to the
// manifests, including the directories holding symlinks on the way, is
// writable by root or the agent only, as sudo and sshd check.
func TestLoadChecksAncestors(t *testing.T) {
	const other = 12345
	// tree makes base/a/pods with a pod in it, a's mode set to mode.
	tree := func(t *testing.T, mode os.FileMode) (base, a, pods string) {
		base = t.TempDir()
		a, pods = filepath.Join(base, "a"), filepath.Join(base, "a", "pods")
		mkdir(t, a, 0o755)
		mkdir(t, pods, 0o755)
		writeFile(t, filepath.Join(pods, "web.yaml"), podYAML("web", "rootfs:/x"))
		if err := os.Chmod(a, mode); err != nil {
			t.Fatal(err)
		}
		return base, a, pods
	}
	ok := summary{Pods: []string{"default/web web.yaml rootfs:/x"}}
	t.Run("safe ancestors", func(t *testing.T) {
		_, _, pods := tree(t, 0o755)
		checkSummary(t, Load(pods), ok)
	})
	t.Run("world-writable ancestor", func(t *testing.T) {
		_, a, pods := tree(t, 0o777)
		snap := Load(pods)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+a)
	})
	t.Run("group-writable ancestor", func(t *testing.T) {
		_, a, pods := tree(t, 0o775)
		snap := Load(pods)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+a)
	})
	t.Run("sticky world-writable ancestor, as /tmp", func(t *testing.T) {
		_, _, pods := tree(t, 0o777|os.ModeSticky)
		checkSummary(t, Load(pods), ok)
	})
	t.Run("sticky ancestor, entry of another user", func(t *testing.T) {
		_, _, pods := tree(t, 0o777|os.ModeSticky)
		chown(t, pods, other)
		snap := Load(pods)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chown root "+pods)
	})
	t.Run("ancestor of another user", func(t *testing.T) {
		_, a, pods := tree(t, 0o755)
		chown(t, a, other)
		snap := Load(pods)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chown root "+a)
	})
	t.Run("the manifest directory itself gets no sticky exception", func(t *testing.T) {
		_, _, pods := tree(t, 0o755)
		if err := os.Chmod(pods, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		snap := Load(pods)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+pods)
	})
	t.Run("symlink on the way, in a safe directory", func(t *testing.T) {
		base, _, _ := tree(t, 0o755)
		link := filepath.Join(base, "current")
		symlink(t, "a/pods", link)
		snap := Load(link)
		checkSummary(t, snap, ok)
		if got, want := snap.Pods[0].File, filepath.Join(link, "web.yaml"); got != want {
			t.Errorf("pod File = %s, want the path as given, %s", got, want)
		}
	})
	t.Run("symlink on the way, in a writable directory", func(t *testing.T) {
		base, _, pods := tree(t, 0o755)
		links := filepath.Join(base, "links")
		mkdir(t, links, 0o777)
		symlink(t, pods, filepath.Join(links, "pods"))
		snap := Load(filepath.Join(links, "pods"))
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+links)
	})
	t.Run("symlink of another user in a sticky directory", func(t *testing.T) {
		base, _, pods := tree(t, 0o755)
		links := filepath.Join(base, "links")
		mkdir(t, links, 0o777|os.ModeSticky)
		link := filepath.Join(links, "pods")
		symlink(t, pods, link)
		chown(t, link, other)
		snap := Load(link)
		checkSummary(t, snap, summary{Errors: []string{"pods"}})
		checkUnsafe(t, snap.Errors[0].Err, "chown root "+link)
	})
}

// TestLoadChecksSymlinkTargets checks the directories a manifest's symlink
// leads through, to the target's own.
func TestLoadChecksSymlinkTargets(t *testing.T) {
	t.Run("relative target with ..", func(t *testing.T) {
		base := t.TempDir()
		dir, data := filepath.Join(base, "pods"), filepath.Join(base, "data")
		mkdir(t, dir, 0o755)
		mkdir(t, data, 0o755)
		writeFile(t, filepath.Join(data, "real.yaml"), podYAML("web", "rootfs:/x"))
		symlink(t, "../data/real.yaml", filepath.Join(dir, "web.yaml"))
		checkSummary(t, Load(dir), summary{Pods: []string{"default/web web.yaml rootfs:/x"}})
	})
	t.Run("target under a writable directory", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		sub := filepath.Join(elsewhere, "sub")
		mkdir(t, sub, 0o755)
		writeFile(t, filepath.Join(sub, "real.yaml"), podYAML("web", "rootfs:/x"))
		if err := os.Chmod(elsewhere, 0o777); err != nil {
			t.Fatal(err)
		}
		symlink(t, filepath.Join(sub, "real.yaml"), filepath.Join(dir, "web.yaml"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+elsewhere)
	})
	t.Run("second hop in a writable directory", func(t *testing.T) {
		dir, hop, real := t.TempDir(), t.TempDir(), t.TempDir()
		writeFile(t, filepath.Join(real, "real.yaml"), podYAML("web", "rootfs:/x"))
		symlink(t, filepath.Join(real, "real.yaml"), filepath.Join(hop, "link.yaml"))
		if err := os.Chmod(hop, 0o777); err != nil {
			t.Fatal(err)
		}
		symlink(t, filepath.Join(hop, "link.yaml"), filepath.Join(dir, "web.yaml"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chmod go-w "+hop)
	})
	t.Run("target of another user", func(t *testing.T) {
		dir, elsewhere := t.TempDir(), t.TempDir()
		target := filepath.Join(elsewhere, "real.yaml")
		writeFile(t, target, podYAML("web", "rootfs:/x"))
		chown(t, target, 12345)
		symlink(t, target, filepath.Join(dir, "web.yaml"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"web.yaml"}})
		checkUnsafe(t, snap.Errors[0].Err, "chown root "+target)
	})
	t.Run("symlink loop", func(t *testing.T) {
		dir := t.TempDir()
		symlink(t, "b.yaml", filepath.Join(dir, "a.yaml"))
		symlink(t, "a.yaml", filepath.Join(dir, "b.yaml"))
		snap := Load(dir)
		checkSummary(t, snap, summary{Errors: []string{"a.yaml", "b.yaml"}})
		if !errors.Is(snap.Errors[0].Err, syscall.ELOOP) {
			t.Errorf("error %v, want ELOOP", snap.Errors[0].Err)
		}
	})
}

// TestReadChecked checks the read that follows the checks: it takes the
// file it opened, not whatever the path names by then. A symlink swapped
// in after the resolution is not followed, a FIFO does not block, and the
// owner and mode are those of the open file.
func TestReadChecked(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, podYAML("web", "rootfs:/x"))
	if _, data, err := readChecked(good); err != nil || string(data) != podYAML("web", "rootfs:/x") {
		t.Errorf("readChecked(good) = %q, %v", data, err)
	}

	link := filepath.Join(dir, "link.yaml")
	symlink(t, good, link)
	if _, _, err := readChecked(link); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("readChecked(symlink) = %v, want ELOOP", err)
	}

	writable := filepath.Join(dir, "writable.yaml")
	writeFile(t, writable, podYAML("web", "rootfs:/x"))
	if err := os.Chmod(writable, 0o666); err != nil {
		t.Fatal(err)
	}
	_, _, err := readChecked(writable)
	checkUnsafe(t, err, "chmod go-w "+writable)

	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := readChecked(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("readChecked(fifo) succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("readChecked blocked on a FIFO")
	}
}
