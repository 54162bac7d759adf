package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// snapshot is what of the machine the systems under test could leave
// behind. Other users of the machine change it too, so a diff is reported,
// never acted on.
type snapshot map[string][]string

func takeSnapshot(work string) snapshot {
	s := snapshot{}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			s["link"] = append(s["link"], l.Attrs().Name)
		}
	}
	for _, d := range []string{"/run/netns", "/etc/cni/net.d", "/etc/containers/networks", "/run/libpod", "/run/containers/storage", "/var/lib/containers/storage", "/var/run/netavark"} {
		e, _ := os.ReadDir(d)
		for _, x := range e {
			s["file"] = append(s["file"], filepath.Join(d, x.Name()))
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/*")
	for _, d := range cg {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			s["cgroup"] = append(s["cgroup"], d)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], work) {
				s["mount"] = append(s["mount"], f[4])
			}
		}
	}
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		s["nft"] = strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, ":") || strings.HasPrefix(l, "-A") {
				s["iptables"] = append(s["iptables"], strings.Fields(l)[0]+" "+strings.Join(strings.Fields(l)[1:2], ""))
			}
		}
	}
	return s
}

// ours are substrings of the names this run or podman give things; other
// new things are other users' (tests running beside) and are not reported.
var ours = []string{"pbf", "pbb", "pbi", "pbn", "pbench", "peapod-bench", "libpod", "netns-", "podman", "NETAVARK", "ip filter", "ip nat", "containers", "cni", "hugetlb"}

// diff lists what of ours exists now and did not before.
func (before snapshot) diff(after snapshot, work string) []string {
	var out []string
	for kind, items := range after {
		for _, it := range items {
			if slices.Contains(before[kind], it) {
				continue
			}
			if strings.HasPrefix(it, work) || slices.ContainsFunc(ours, func(o string) bool { return strings.Contains(it, o) }) {
				out = append(out, kind+" "+it)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// removeWorkDir deletes work, unless something is still mounted under it:
// then it unmounts that and leaves the directory for a look.
func removeWorkDir(work string) error {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mnts []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], work+"/") {
				mnts = append(mnts, f[4])
			}
		}
		// Deepest first.
		slices.SortFunc(mnts, func(a, b string) int { return len(b) - len(a) })
		for _, m := range mnts {
			unix.Unmount(m, unix.MNT_DETACH)
		}
		if len(mnts) > 0 {
			return fmt.Errorf("%d mounts were still under it (unmounted); left it in place", len(mnts))
		}
	}
	return os.RemoveAll(work)
}
