package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// crunWrapMain runs when bench is started as `crun` (a symlink that podman's
// temp containers.conf names as its OCI runtime). Podman 4.3 gives the infra container of every pod
// RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 4194304 whatever containers.conf
// says, and crun cannot raise a hard limit without CAP_SYS_RESOURCE, which
// root may lack (it does on the project's machines). On `create`, this caps
// every rlimit of the bundle's config.json at this process's own hard limits,
// then execs crun. It costs one extra exec per runtime call.
func crunWrapMain(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: bench crun-wrap CRUN [ARGS...]")
	}
	crun := args[0]
	if bundle := bundleArg(args[1:]); bundle != "" {
		if err := capRlimits(filepath.Join(bundle, "config.json")); err != nil {
			return err
		}
	}
	return syscall.Exec(crun, append([]string{crun}, args[1:]...), os.Environ())
}

// bundleArg returns the --bundle of a `create` call, or "".
func bundleArg(args []string) string {
	create := false
	bundle := ""
	for i, a := range args {
		switch {
		case a == "create":
			create = true
		case (a == "--bundle" || a == "-b") && i+1 < len(args):
			bundle = args[i+1]
		case strings.HasPrefix(a, "--bundle="):
			bundle = strings.TrimPrefix(a, "--bundle=")
		}
	}
	if !create {
		return ""
	}
	return bundle
}

var rlimitByName = map[string]int{"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC}

func capRlimits(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	proc, _ := spec["process"].(map[string]any)
	rls, _ := proc["rlimits"].([]any)
	for _, x := range rls {
		rl, _ := x.(map[string]any)
		res, ok := rlimitByName[fmt.Sprint(rl["type"])]
		if !ok {
			continue
		}
		var lim unix.Rlimit
		if err := unix.Getrlimit(res, &lim); err != nil {
			return err
		}
		for _, k := range []string{"hard", "soft"} {
			if v, ok := rl[k].(float64); ok && v > float64(lim.Max) {
				rl[k] = lim.Max
			}
		}
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// realCrun is the crun the wrapper execs.
func realCrun() string {
	for _, p := range []string{"/usr/bin/crun", "/usr/local/bin/crun", "/usr/sbin/crun"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/usr/bin/crun"
}
