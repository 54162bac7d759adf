package container

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestReopenIfSealed checks that a sealed copy is recognised (so a shim
// started from the agent's copy makes none of its own) and that anything
// else, including an unsealed memfd, is not.
func TestReopenIfSealed(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(plain, []byte("not sealed"), 0o755); err != nil {
		t.Fatal(err)
	}
	sealedCopy, err := copyToSealedMemfd(plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sealedCopy.Close() })

	f, err := reopenIfSealed(fmt.Sprintf("/proc/self/fd/%d", sealedCopy.Fd()))
	if err != nil || f == nil {
		t.Fatalf("reopenIfSealed(sealed memfd) = %v, %v; want the file", f, err)
	}
	f.Close()
	if f, err := reopenIfSealed(plain); err != nil || f != nil {
		t.Errorf("reopenIfSealed(regular file) = %v, %v; want nil, nil", f, err)
	}
}
