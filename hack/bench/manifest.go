package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// manifest returns the Pod document for p: two busybox containers, each
// running containerScript with its marker. image and pullPolicy differ per
// system (a rootfs path for peapod, an imported image for podman).
func manifest(p pod, image, pullPolicy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  terminationGracePeriodSeconds: 10\n  containers:\n", p.name)
	for i, m := range p.markers {
		cmd, _ := json.Marshal(containerScript(m))
		fmt.Fprintf(&b, "  - name: c%d\n    image: %s\n    command: %s\n", i, image, cmd)
		if pullPolicy != "" {
			fmt.Fprintf(&b, "    imagePullPolicy: %s\n", pullPolicy)
		}
	}
	return b.String()
}

// dropManifests writes every pod's manifest under a dot name in dir, then
// renames them all into place, so a watcher sees each file appear whole and
// all of them within microseconds.
func dropManifests(dir string, pods []pod, image string) error {
	for _, p := range pods {
		tmp := filepath.Join(dir, "."+p.name+".tmp")
		if err := os.WriteFile(tmp, []byte(manifest(p, image, "")), 0o600); err != nil {
			return err
		}
	}
	for _, p := range pods {
		if err := os.Rename(filepath.Join(dir, "."+p.name+".tmp"), filepath.Join(dir, p.name+".yaml")); err != nil {
			return err
		}
	}
	return nil
}

// removeManifests deletes every pod's manifest from dir.
func removeManifests(dir string, pods []pod) error {
	for _, p := range pods {
		if err := os.Remove(filepath.Join(dir, p.name+".yaml")); err != nil {
			return err
		}
	}
	return nil
}
