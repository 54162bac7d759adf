package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The tests name x86-64's system calls (open, arch_prctl); the arm64
// table compiles and is generated the same way, but is not exercised here.

// defaultCaps is docker's and containerd's default capability set, which
// runtime/container gives a container without a securityContext.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// call is one system call as the filter sees it (struct seccomp_data).
type call struct {
	name string
	nr   uint32 // used when name is ""
	arch uint32 // 0 means nativeArch
	args [6]uint64
}

func (c call) String() string {
	name := c.name
	if name == "" {
		name = fmt.Sprintf("#%#x", c.nr)
	}
	if c.arch != 0 {
		name += fmt.Sprintf("@arch%#x", c.arch)
	}
	return fmt.Sprintf("%s%x", name, c.args[:2])
}

// packet lays c out for x/net/bpf's VM, which loads 32-bit words in
// network byte order where the kernel uses the machine's: each word of
// struct seccomp_data is written big-endian, at the offset the kernel has
// it at on a little-endian machine.
func (c call) packet(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 64)
	nr, arch := c.nr, c.arch
	if c.name != "" {
		n, ok := syscallNumbers[c.name]
		if !ok {
			t.Fatalf("no system call %q on this architecture", c.name)
		}
		nr = n
	}
	if arch == 0 {
		arch = nativeArch
	}
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(b[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[offArgs+8*i+4:], uint32(a>>32))
	}
	return b
}

// evaluate runs p on c in a BPF interpreter and returns the filter's
// verdict.
func evaluate(t *testing.T, p *Program, c call) uint32 {
	t.Helper()
	raw, err := decode(p.Filter)
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program has instructions x/net/bpf cannot decode")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Run(c.packet(t))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

func verdict(v uint32) string {
	switch {
	case v == retAllow:
		return "ALLOW"
	case v == retKillProcess:
		return "KILL_PROCESS"
	case v == retKillThread:
		return "KILL_THREAD"
	case v&0xffff0000 == retErrno:
		return "ERRNO(" + unix.ErrnoName(unix.Errno(v&0xffff)) + ")"
	}
	return fmt.Sprintf("%#x", v)
}

func mustDefault(t *testing.T, caps []string) *Program {
	t.Helper()
	p, err := Compile(DefaultProfile(), caps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	allow = "ALLOW"
	eperm = "ERRNO(EPERM)"
	kill  = "KILL_PROCESS"
)

// TestRuntimeDefault checks the default profile's decisions for the
// default capability set: what docker allows runs, the escapes do not.
func TestRuntimeDefault(t *testing.T) {
	p := mustDefault(t, defaultCaps)
	newNS := uint64(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP)
	threadFlags := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID)
	for _, tc := range []struct {
		c    call
		want string
	}{
		{call{name: "read"}, allow},
		{call{name: "write"}, allow},
		{call{name: "execve"}, allow},
		{call{name: "exit_group"}, allow},
		{call{name: "openat2"}, allow},
		{call{name: "close_range"}, allow},
		{call{name: "capset"}, allow},
		{call{name: "setuid"}, allow},
		{call{name: "setgroups"}, allow},
		{call{name: "prctl"}, allow},
		{call{name: "chdir"}, allow},
		{call{name: "rt_sigreturn"}, allow},
		{call{name: "arch_prctl"}, allow},
		{call{name: "chroot"}, allow}, // CAP_SYS_CHROOT is in the set
		{call{name: "ptrace"}, allow}, // kernel 4.8+
		{call{name: "clone", args: [6]uint64{uint64(unix.SIGCHLD)}}, allow},
		{call{name: "clone", args: [6]uint64{threadFlags}}, allow},
		{call{name: "clone", args: [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}}, eperm},
		{call{name: "clone", args: [6]uint64{unix.CLONE_NEWNS}}, eperm},
		{call{name: "clone", args: [6]uint64{unix.CLONE_NEWCGROUP}}, eperm},
		{call{name: "clone", args: [6]uint64{newNS}}, eperm},
		{call{name: "clone3"}, "ERRNO(ENOSYS)"},
		{call{name: "unshare", args: [6]uint64{unix.CLONE_NEWUSER}}, eperm},
		{call{name: "setns"}, eperm},
		{call{name: "mount"}, eperm},
		{call{name: "umount2"}, eperm},
		{call{name: "fsopen"}, eperm},
		{call{name: "open_tree"}, eperm},
		{call{name: "move_mount"}, eperm},
		{call{name: "pivot_root"}, eperm},
		{call{name: "keyctl"}, eperm},
		{call{name: "add_key"}, eperm},
		{call{name: "request_key"}, eperm},
		{call{name: "io_uring_setup"}, eperm},
		{call{name: "io_uring_enter"}, eperm},
		{call{name: "io_uring_register"}, eperm},
		{call{name: "bpf"}, eperm},
		{call{name: "perf_event_open"}, eperm},
		{call{name: "kexec_load"}, eperm},
		{call{name: "init_module"}, eperm},
		{call{name: "reboot"}, eperm},
		{call{name: "swapon"}, eperm},
		{call{name: "open_by_handle_at"}, eperm},
		{call{name: "userfaultfd"}, eperm},
		{call{name: "kcmp"}, eperm},
		{call{name: "sethostname"}, eperm},
		{call{name: "socket", args: [6]uint64{unix.AF_UNIX}}, allow},
		{call{name: "socket", args: [6]uint64{unix.AF_INET}}, allow},
		{call{name: "socket", args: [6]uint64{unix.AF_INET6}}, allow},
		{call{name: "socket", args: [6]uint64{unix.AF_NETLINK}}, allow},
		{call{name: "socket", args: [6]uint64{unix.AF_PACKET}}, allow},
		{call{name: "socket", args: [6]uint64{unix.AF_VSOCK}}, eperm},
		{call{name: "socket", args: [6]uint64{unix.AF_ALG}}, eperm},
		{call{name: "socket", args: [6]uint64{1<<32 | unix.AF_INET}}, eperm},
		{call{name: "personality", args: [6]uint64{0}}, allow},
		{call{name: "personality", args: [6]uint64{0xffffffff}}, allow},
		{call{name: "personality", args: [6]uint64{0x0008}}, allow},  // PER_LINUX32
		{call{name: "personality", args: [6]uint64{0x20000}}, allow}, // UNAME26
		{call{name: "personality", args: [6]uint64{0x20008}}, allow},
		{call{name: "personality", args: [6]uint64{0x0400000}}, eperm}, // READ_IMPLIES_EXEC,
		{call{name: "personality", args: [6]uint64{0x0040000}}, eperm}, // ADDR_NO_RANDOMIZE,
		// Numbers beyond the profile's, a tracer's skip, foreign ABIs.
		{call{nr: maxListed(t) + 1}, "ERRNO(ENOSYS)"},
		{call{nr: 1000}, "ERRNO(ENOSYS)"},
		{call{nr: noCall}, eperm},
		{call{nr: x32Bit}, kill},
		{call{nr: x32Bit | 83}, kill}, // x32 mkdir
		{call{name: "read", arch: unix.AUDIT_ARCH_I386}, kill},
	} {
		if got := verdict(evaluate(t, p, tc.c)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.c, got, tc.want)
		}
	}
}

// maxListed returns the highest number the default profile names here.
func maxListed(t *testing.T) uint32 {
	t.Helper()
	var highest uint32
	for _, c := range DefaultProfile().Syscalls {
		for _, n := range c.Names {
			if nr, ok := syscallNumbers[n]; ok && nr > highest {
				highest = nr
			}
		}
	}
	return highest
}

// TestRuntimeDefaultCapabilities checks the rules conditioned on
// capabilities: a capability added opens its calls, one dropped closes
// them, and the compile takes the set it is given.
func TestRuntimeDefaultCapabilities(t *testing.T) {
	withAdmin := mustDefault(t, append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"))
	noChroot := mustDefault(t, slices.DeleteFunc(slices.Clone(defaultCaps), func(c string) bool { return c == "CAP_SYS_CHROOT" }))
	for _, tc := range []struct {
		p    *Program
		c    call
		want string
	}{
		{withAdmin, call{name: "mount"}, allow},
		{withAdmin, call{name: "unshare"}, allow},
		{withAdmin, call{name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}}, allow},
		{withAdmin, call{name: "clone3"}, allow},
		{withAdmin, call{name: "kcmp"}, allow},
		{withAdmin, call{name: "keyctl"}, eperm},
		{withAdmin, call{name: "io_uring_setup"}, eperm},
		{noChroot, call{name: "chroot"}, eperm},
		{noChroot, call{name: "read"}, allow},
	} {
		if got := verdict(evaluate(t, tc.p, tc.c)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.c, got, tc.want)
		}
	}
}

// TestEveryCallDecided runs every system call of the architecture through
// the default profile: each is allowed by an unconditional rule, decided
// by its arguments, or denied with EPERM; none kills.
func TestEveryCallDecided(t *testing.T) {
	p := mustDefault(t, defaultCaps)
	listed := map[string]bool{}
	for _, c := range DefaultProfile().Syscalls {
		for _, n := range c.Names {
			listed[n] = true
		}
	}
	for name := range syscallNumbers {
		got := verdict(evaluate(t, p, call{name: name}))
		if got == kill || (!listed[name] && got != eperm && !(got == "ERRNO(ENOSYS)" && syscallNumbers[name] > maxListed(t))) {
			t.Errorf("%s: %s (listed in the profile: %v)", name, got, listed[name])
		}
	}
}

// TestOperators compares each operator's compiled form with its
// definition on 64-bit values around the operand, in both halves.
func TestOperators(t *testing.T) {
	const v = 0x00000001_00000005
	values := []uint64{0, 1, 4, 5, 6, v - 1, v, v + 1, 0x00000001_00000000, 0x00000002_00000000,
		0x00000000_ffffffff, 0x00000002_00000005, 0x00000000_00000005, ^uint64(0)}
	ops := map[specs.LinuxSeccompOperator]func(x uint64) bool{
		specs.OpEqualTo:      func(x uint64) bool { return x == v },
		specs.OpNotEqual:     func(x uint64) bool { return x != v },
		specs.OpLessThan:     func(x uint64) bool { return x < v },
		specs.OpLessEqual:    func(x uint64) bool { return x <= v },
		specs.OpGreaterThan:  func(x uint64) bool { return x > v },
		specs.OpGreaterEqual: func(x uint64) bool { return x >= v },
		specs.OpMaskedEqual:  func(x uint64) bool { return x&0xff000000_000000ff == 0x12000000_00000034 },
	}
	for op, want := range ops {
		arg := specs.LinuxSeccompArg{Index: 2, Value: v, Op: op}
		if op == specs.OpMaskedEqual {
			arg.Value, arg.ValueTwo = 0xff000000_000000ff, 0x12000000_00000034
			values = append(values, 0x12345678_9abcde34, 0x12000000_00000035, 0x13000000_00000034)
		}
		p := compileTest(t, specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{arg}})
		for _, x := range values {
			c := call{name: "read", args: [6]uint64{2: x}}
			got := verdict(evaluate(t, p, c)) == allow
			if got != want(x) {
				t.Errorf("%s %#x: arg %#x matched=%v, want %v", op, arg.Value, x, got, want(x))
			}
		}
	}
}

// compileTest compiles a profile that denies by default with EPERM.
func compileTest(t *testing.T, calls ...specs.LinuxSyscall) *Program {
	t.Helper()
	p, err := compile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: calls}, syscallNumbers)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRuleCombination checks how comparisons combine: different
// arguments of one rule AND, repeated comparisons of one argument OR (as
// runc reads them), and rules of one call apply in order.
func TestRuleCombination(t *testing.T) {
	enosys := uint(unix.ENOSYS)
	p := compileTest(t,
		specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 2, Op: specs.OpEqualTo}}},
		specs.LinuxSyscall{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 2, Op: specs.OpEqualTo}}},
		specs.LinuxSyscall{Names: []string{"close"}, Action: specs.ActErrno, ErrnoRet: &enosys, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 3, Op: specs.OpEqualTo}}},
		specs.LinuxSyscall{Names: []string{"close", "no_such_call"}, Action: specs.ActAllow},
		specs.LinuxSyscall{Names: []string{"close"}, Action: specs.ActKillProcess},
	)
	for _, tc := range []struct {
		c    call
		want string
	}{
		{call{name: "read", args: [6]uint64{1, 2}}, allow},
		{call{name: "read", args: [6]uint64{1, 3}}, eperm},
		{call{name: "read", args: [6]uint64{0, 2}}, eperm},
		{call{name: "write", args: [6]uint64{1}}, allow},
		{call{name: "write", args: [6]uint64{2}}, allow},
		{call{name: "write", args: [6]uint64{3}}, eperm},
		{call{name: "close", args: [6]uint64{3}}, "ERRNO(ENOSYS)"},
		{call{name: "close", args: [6]uint64{4}}, allow},
		{call{name: "open"}, eperm},           // below the highest listed: the default
		{call{name: "stat"}, "ERRNO(ENOSYS)"}, // above it: newer than the profile
	} {
		if got := verdict(evaluate(t, p, tc.c)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.c, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    specs.LinuxSeccomp
		want string
	}{
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "notification"},
		{"unknown action", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, "unknown action"},
		{"listener", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/x"}, "listenerPath"},
		{"flag", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC"}}, "TSYNC"},
		{"operator", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
			Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_SOMETIMES"}}}}}, "operator"},
		{"index", specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
			Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "index 6"},
	} {
		_, err := compile(&tc.s, syscallNumbers)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestParseProfile(t *testing.T) {
	p, err := ParseProfile([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := Compile(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"mkdirat": eperm, "mkdir": eperm, "read": allow, "mount": allow, "mseal": allow} {
		if got := verdict(evaluate(t, prog, call{name: name})); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	// Denying by name cannot be side-stepped through the x32 numbers.
	if got := verdict(evaluate(t, prog, call{nr: x32Bit | syscallNumbers["mkdirat"]})); got != kill {
		t.Errorf("x32 mkdirat: %s, want %s", got, kill)
	}
	for _, bad := range []string{``, `{`, `{"syscalls":[]}`, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"x"}}]}`} {
		if _, err := ParseProfile([]byte(bad)); err == nil {
			t.Errorf("ParseProfile(%q) succeeded, want an error", bad)
		}
	}
}

func TestCache(t *testing.T) {
	var c Cache
	a, err := c.RuntimeDefault(defaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(defaultCaps)
	slices.Reverse(reversed)
	b, _ := c.RuntimeDefault(reversed)
	if a != b {
		t.Error("the same capabilities in another order compiled again")
	}
	admin, _ := c.RuntimeDefault(append(slices.Clone(defaultCaps), "CAP_SYS_ADMIN"))
	if admin == a {
		t.Error("another capability set got the same program")
	}
	l1, err := c.Localhost([]byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), defaultCaps)
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := c.Localhost([]byte(`{"defaultAction":"SCMP_ACT_LOG"}`), defaultCaps)
	if l1 == l2 || l1 == a {
		t.Error("different profiles share a program")
	}
	if _, err := c.Localhost([]byte(`{`), defaultCaps); err == nil {
		t.Error("invalid profile compiled")
	}
}
