package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteHosts(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "etc", "hosts")
	if err := WriteHosts(dir, "web-0", nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(hosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHosts(dir, "web-0", []string{"10.88.0.5", "fd00::5"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(hosts)
	if err != nil {
		t.Fatal(err)
	}
	want := "# Kubernetes-managed hosts file.\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\n" +
		"fe00::0\tip6-mcastprefix\n" +
		"fe00::1\tip6-allnodes\n" +
		"fe00::2\tip6-allrouters\n" +
		"10.88.0.5\tweb-0\n" +
		"fd00::5\tweb-0\n"
	if string(got) != want {
		t.Errorf("hosts file:\n%s\nwant:\n%s", got, want)
	}
	after, err := os.Stat(hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("WriteHosts replaced the file; bind mounts of it would go stale")
	}
}
