package seccomp

import "testing"

// absentOnAMD64 are the names in docker's default profile that x86-64 has
// no system call for: other architectures' (arm_*, s390_*, riscv_*), the
// 32-bit ABIs' (*32, *64, *_time64, socketcall, ipc) and ones that exist
// only as library functions here (umount, waitpid, stime).
var absentOnAMD64 = []string{
	"_llseek", "_newselect", "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush",
	"chown32", "clock_adjtime64", "clock_getres_time64", "clock_gettime64", "clock_nanosleep_time64",
	"clock_settime64", "fadvise64_64", "fchown32", "fcntl64", "fstat64", "fstatat64", "fstatfs64",
	"ftruncate64", "futex_time64", "getegid32", "geteuid32", "getgid32", "getgroups32", "getresgid32",
	"getresuid32", "getuid32", "io_pgetevents_time64", "ipc", "lchown32", "lstat64", "mmap2",
	"mq_timedreceive_time64", "mq_timedsend_time64", "ppoll_time64", "pselect6_time64", "recv",
	"recvmmsg_time64", "riscv_flush_icache", "riscv_hwprobe", "rt_sigtimedwait_time64",
	"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr", "sched_rr_get_interval_time64",
	"semtimedop_time64", "send", "sendfile64", "set_tls", "setfsgid32", "setfsuid32", "setgid32",
	"setgroups32", "setregid32", "setresgid32", "setresuid32", "setreuid32", "setuid32", "sigprocmask",
	"sigreturn", "socketcall", "stat64", "statfs64", "stime", "swapcontext", "sync_file_range2",
	"timer_gettime64", "timer_settime64", "timerfd_gettime64", "timerfd_settime64", "truncate64",
	"ugetrlimit", "umount", "utimensat_time64", "waitpid",
}

// TestProfileNamesResolve checks every name of the default profile, under
// any condition: it has a number here, or it is knowingly absent. A new
// name in a newer profile, or a table that lost one, fails here.
func TestProfileNamesResolve(t *testing.T) {
	absent := map[string]bool{}
	for _, n := range absentOnAMD64 {
		absent[n] = true
		if _, ok := syscallNumbers[n]; ok {
			t.Errorf("%s is listed as absent but has number %d", n, syscallNumbers[n])
		}
	}
	for _, c := range DefaultProfile().Syscalls {
		for _, n := range c.Names {
			if _, ok := syscallNumbers[n]; !ok && !absent[n] {
				t.Errorf("%s: no x86-64 system call of that name, and not known to be absent", n)
			}
		}
	}
}
