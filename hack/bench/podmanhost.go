package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// What podman (netavark) leaves on the host outside its own directories,
// and how this run undoes it. Netavark creates the iptables-nft tables
// `ip filter` and `ip nat` with NETAVARK chains and jumps to them, makes
// /run/netns a shared bind mount of itself, and keeps its IPAM database in
// /run/containers/networks. The run removes what did not exist before it.

type hostState struct {
	nftTables     map[string]bool
	runNetns      bool
	runContainers bool
}

func recordHost() hostState {
	h := hostState{nftTables: nftTables()}
	_, err := os.Stat("/run/netns")
	h.runNetns = err == nil
	_, err = os.Stat("/run/containers")
	h.runContainers = err == nil
	return h
}

func nftTables() map[string]bool {
	t := map[string]bool{}
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return t
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t[strings.TrimPrefix(l, "table ")] = true
	}
	return t
}

// restore undoes netavark's host changes that were not there before.
func (h hostState) restore() error {
	var errs []error
	for _, t := range []string{"filter", "nat"} {
		errs = append(errs, dropNetavarkRules(t, !h.nftTables["ip "+t]))
	}
	if !h.runNetns {
		if e, _ := os.ReadDir("/run/netns"); len(e) == 0 {
			unix.Unmount("/run/netns", unix.MNT_DETACH)
			os.Remove("/run/netns")
		}
	}
	if !h.runContainers {
		errs = append(errs, os.RemoveAll("/run/containers/networks"))
		os.Remove("/run/containers")
	}
	return errors.Join(errs...)
}

// dropNetavarkRules deletes netavark's chains from iptables table t and the
// jumps to them; with wholeTable (the table did not exist before the run),
// it deletes the table itself when nothing else is in it.
func dropNetavarkRules(t string, wholeTable bool) error {
	out, err := exec.Command("iptables", "-t", t, "-S").Output()
	if err != nil {
		return nil // no iptables: nothing of netavark's either
	}
	var chains []string
	var jumps []string
	other := false
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) < 2:
		case f[0] == "-N" && strings.HasPrefix(f[1], "NETAVARK"):
			chains = append(chains, f[1])
		case f[0] == "-N":
			other = true
		case f[0] == "-A" && strings.HasPrefix(f[1], "NETAVARK"):
		case f[0] == "-A" && strings.Contains(l, "-j NETAVARK"):
			jumps = append(jumps, l)
		case f[0] == "-A":
			other = true
		}
	}
	if len(chains) == 0 {
		return nil
	}
	if wholeTable && !other {
		if out, err := exec.Command("nft", "delete", "table", "ip", t).CombinedOutput(); err != nil {
			return fmt.Errorf("nft delete table ip %s: %w: %s", t, err, out)
		}
		return nil
	}
	for _, j := range jumps {
		// -S prints each rule shell-quoted (netavark's comments have
		// spaces), so the shell splits it back into arguments.
		del := "iptables -t " + t + " -D" + strings.TrimPrefix(j, "-A")
		if out, err := exec.Command("sh", "-c", del).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", del, err, out)
		}
	}
	for _, c := range chains {
		exec.Command("iptables", "-t", t, "-F", c).Run()
	}
	for _, c := range chains {
		if out, err := exec.Command("iptables", "-t", t, "-X", c).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -t %s -X %s: %w: %s", t, c, err, out)
		}
	}
	return nil
}
