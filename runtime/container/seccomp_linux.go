package container

// installSeccomp loads the container's seccomp filter, if it has one, on
// the init stage's thread. execCommand calls it at one of two points,
// because seccomp(SECCOMP_SET_MODE_FILTER) needs no_new_privs or
// CAP_SYS_ADMIN in the caller's user namespace:
//
//   - With no_new_privs (allowPrivilegeEscalation: false) it is the last
//     step before execve, after close_range: every step before it runs
//     unfiltered, so a profile needs to allow only execve and what the
//     command itself does, and nothing of the init stage depends on what
//     the profile allows.
//   - Without it, the filter must go on while the thread still holds
//     CAP_SYS_ADMIN: before dropPrivileges takes it away (the user switch
//     would clear it as well). The filter then applies to the rest of the
//     init stage, which the profile must permit: prctl (bounding set,
//     parent-death signal), capset, setgroups, setgid, setuid, poll, chdir,
//     stat and access (the PATH lookup), close_range and execve, plus the
//     Go runtime's own calls (futex, mmap, signals). Docker's default
//     profile allows all of them; a Localhost profile that does not fails
//     the start with the step it denied, as with runc, which orders these
//     steps the same way.
//
// The filter is installed on this thread only, without
// SECCOMP_FILTER_FLAG_TSYNC. RunInit locked the goroutine to the thread
// that execs, and execve keeps only the calling thread: the kernel ends
// every other thread of the process (de_thread), and the new program
// starts with this thread's filter. The other threads run only the Go
// runtime of the init stage until then, which the container cannot
// influence, so filtering them would protect nothing. (Go's setuid and
// setgid do run on every thread, AllThreadsSyscall: the other threads make
// those calls unfiltered, and they end at exec all the same.)
func installSeccomp(cfg *initConfig) error {
	if cfg.Seccomp == nil {
		return nil
	}
	return cfg.Seccomp.Install()
}
