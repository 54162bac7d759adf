package manifests

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode checks that Decode never panics and keeps its contract: pods
// or an error, never both; every pod has a UID and a unique key.
func FuzzDecode(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "testdata/*.json", "examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pods, err := Decode("/m/fuzz.yaml", data)
		if err != nil {
			if pods != nil {
				t.Fatalf("%d pods with error %v", len(pods), err)
			}
			return
		}
		keys := make(map[string]bool)
		for _, p := range pods {
			if p.UID() == "" || p.Pod.Annotations[AnnotationHash] != string(p.UID()) {
				t.Fatalf("pod %s: UID %q, hash annotation %q", p.Key(), p.UID(), p.Pod.Annotations[AnnotationHash])
			}
			if keys[p.Key()] {
				t.Fatalf("pod %s twice", p.Key())
			}
			keys[p.Key()] = true
		}
	})
}
