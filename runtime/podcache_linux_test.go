package runtime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod/peapod/runtime/shim"
)

func TestPodCache(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) {
		t.Helper()
		b, err := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if err != nil {
			t.Fatal(err)
		}
		if err := shim.WriteFileAtomic(filepath.Join(dir, shim.PodFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var c podCache
	write("one")
	a, _, err := c.read(dir)
	if err != nil || a.Name != "one" {
		t.Fatalf("read = %v, %v", a, err)
	}
	if b, _, _ := c.read(dir); b != a {
		t.Error("unchanged pod.json decoded again")
	}
	// A new file (atomic writes make a new inode) is decoded again.
	write("two")
	if b, _, _ := c.read(dir); b == nil || b.Name != "two" {
		t.Errorf("after a rewrite read = %v, want pod two", b)
	}
	c.prune(map[string]bool{})
	if len(c.entries) != 0 {
		t.Errorf("%d entries after prune, want 0", len(c.entries))
	}
	os.Remove(filepath.Join(dir, shim.PodFile))
	if _, _, err := c.read(dir); !os.IsNotExist(err) {
		t.Errorf("read of a missing pod.json: %v, want not exist", err)
	}
}
