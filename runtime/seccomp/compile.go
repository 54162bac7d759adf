package seccomp

import (
	"encoding/binary"
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Return values of a filter (linux/seccomp.h).
const (
	retKillThread  = 0x00000000
	retKillProcess = 0x80000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
)

// Offsets in struct seccomp_data. Both architectures peapod builds for are
// little-endian: an argument's low 32 bits come first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// x32Bit marks the x32 ABI's system calls, which share x86-64's
// AUDIT_ARCH with numbers offset by it. No native number comes near it on
// any architecture.
const x32Bit = 0x40000000

// noCall is system call number -1.
const noCall = 0xffffffff

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = 4096

// rule is one way a system call may match: all of args hold.
type rule struct {
	ret  uint32
	args []specs.LinuxSeccompArg
}

// compile turns a resolved profile into a program for the architecture
// whose system call numbers are table. Names the architecture does not
// have are skipped, as runc does (a profile lists every architecture's).
//
// The program:
//  1. kills the process on a foreign architecture or ABI: i386 system calls
//     of an x86-64 process (int 0x80) and x32 ones carry other numbers, so
//     a rule written for x86-64's would not match them, and a profile that
//     denies by name would let them through. Docker allows them with
//     per-ABI tables; peapod runs 64-bit programs only.
//  2. finds the system call by binary search over ranges of numbers with
//     the same outcome, so a call costs a few comparisons, not one per
//     listed name;
//  3. for a call with argument rules, tries them in the profile's order:
//     the first that matches gives the action, none gives the default;
//  4. answers ENOSYS, not the default, for numbers above every call the
//     profile names, unless the default allows: those are calls newer than
//     the profile, and ENOSYS lets libc fall back to an older call, where
//     EPERM would fail the program. runc does the same.
func compile(s *specs.LinuxSeccomp, table map[string]uint32) (*Program, error) {
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	if s.ListenerPath != "" {
		return nil, fmt.Errorf("listenerPath: seccomp notification is not supported")
	}
	flags, err := filterFlags(s.Flags)
	if err != nil {
		return nil, err
	}
	rules, err := rulesByNumber(s.Syscalls, table)
	if err != nil {
		return nil, err
	}
	var a asm
	native, notX32, foreign := a.newLabel(), a.newLabel(), a.newLabel()
	a.load(offArch)
	a.jump(bpf.JumpEqual, nativeArch, native, next)
	a.ret(retKillProcess)
	a.mark(native)
	a.load(offNr)
	a.jump(bpf.JumpGreaterOrEqual, x32Bit, next, notX32)
	// -1 is no call: a tracer's way to skip one. libseccomp lets it be.
	a.jump(bpf.JumpEqual, noCall, next, foreign)
	a.ret(def)
	a.mark(foreign)
	a.ret(retKillProcess)
	a.mark(notX32)
	a.tree(segments(rules, def, def != retAllow), def)
	raw, err := a.assemble()
	if err != nil {
		return nil, err
	}
	if len(raw) > maxInstructions {
		return nil, fmt.Errorf("seccomp profile compiles to %d instructions, more than the kernel's %d", len(raw), maxInstructions)
	}
	return &Program{Filter: encode(raw), Flags: flags}, nil
}

// action returns the filter's return value for a profile action.
func action(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	errno := uint32(unix.EPERM)
	if errnoRet != nil {
		if *errnoRet > 0xffff {
			return 0, fmt.Errorf("errnoRet %d out of range", *errnoRet)
		}
		errno = uint32(*errnoRet)
	}
	switch act {
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActErrno:
		return retErrno | errno, nil
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActTrace:
		return retTrace | errno, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("%s: seccomp notification is not supported", act)
	}
	return 0, fmt.Errorf("unknown action %q", act)
}

func filterFlags(names []specs.LinuxSeccompFlag) (uint, error) {
	var flags uint
	for _, f := range names {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			return 0, fmt.Errorf("seccomp flag %q is not supported", f)
		}
	}
	return flags, nil
}

// rulesByNumber lists the rules of each system call number, in the
// profile's order, up to the first that has no conditions (it always
// matches, so the rest could never apply).
func rulesByNumber(calls []specs.LinuxSyscall, table map[string]uint32) (map[uint32][]rule, error) {
	rules := make(map[uint32][]rule)
	for _, c := range calls {
		ret, err := action(c.Action, c.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls %v: %w", c.Names, err)
		}
		for _, a := range c.Args {
			if err := checkArg(a); err != nil {
				return nil, fmt.Errorf("syscalls %v: %w", c.Names, err)
			}
		}
		for _, name := range c.Names {
			nr, ok := table[name]
			if !ok {
				continue
			}
			if rs := rules[nr]; len(rs) > 0 && len(rs[len(rs)-1].args) == 0 {
				continue
			}
			rules[nr] = append(rules[nr], splitArgs(ret, c.Args)...)
		}
	}
	return rules, nil
}

func checkArg(a specs.LinuxSeccompArg) error {
	if a.Index > 5 {
		return fmt.Errorf("argument index %d: system calls have 6 arguments", a.Index)
	}
	switch a.Op {
	case specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
		specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual:
		return nil
	}
	return fmt.Errorf("unknown operator %q", a.Op)
}

// splitArgs applies runc's reading of a rule's arguments: all must hold,
// unless one argument is compared more than once, in which case each
// comparison is a rule of its own (libseccomp cannot AND two comparisons
// of one argument; runc ORs them, and profiles are written for that).
func splitArgs(ret uint32, args []specs.LinuxSeccompArg) []rule {
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
	}
	if !repeated {
		return []rule{{ret: ret, args: args}}
	}
	rules := make([]rule, len(args))
	for i, a := range args {
		rules[i] = rule{ret: ret, args: []specs.LinuxSeccompArg{a}}
	}
	return rules
}

// segment is a range of system call numbers, from start to the next
// segment's start, with one outcome: a return value, or the rules of the
// one call it holds.
type segment struct {
	start uint32
	ret   uint32
	rules []rule
}

// segments partitions all numbers into segments, merging neighbours that
// return the same without conditions. With newerENOSYS, numbers above the
// highest with rules return ENOSYS.
func segments(rules map[uint32][]rule, def uint32, newerENOSYS bool) []segment {
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)
	segs := []segment{{start: 0, ret: def}}
	add := func(s segment) {
		if segs[len(segs)-1].start == s.start {
			segs = segs[:len(segs)-1]
		}
		if n := len(segs); n > 0 && s.rules == nil && segs[n-1].rules == nil && segs[n-1].ret == s.ret {
			return
		}
		segs = append(segs, s)
	}
	for _, nr := range nrs {
		rs := rules[nr]
		if len(rs) == 1 && len(rs[0].args) == 0 {
			add(segment{start: nr, ret: rs[0].ret})
		} else {
			add(segment{start: nr, rules: rs})
		}
		if nr < x32Bit-1 {
			add(segment{start: nr + 1, ret: def})
		}
	}
	if last := &segs[len(segs)-1]; newerENOSYS && len(nrs) > 0 && last.start == nrs[len(nrs)-1]+1 {
		last.ret = retErrno | uint32(unix.ENOSYS)
	}
	return segs
}

// encode lays out instructions as struct sock_filter.
func encode(raw []bpf.RawInstruction) []byte {
	b := make([]byte, 0, 8*len(raw))
	for _, r := range raw {
		b = binary.NativeEndian.AppendUint16(b, r.Op)
		b = append(b, r.Jt, r.Jf)
		b = binary.NativeEndian.AppendUint32(b, r.K)
	}
	return b
}

// decode is encode's inverse.
func decode(b []byte) ([]bpf.RawInstruction, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("seccomp filter of %d bytes: not whole instructions", len(b))
	}
	raw := make([]bpf.RawInstruction, len(b)/8)
	for i := range raw {
		ins := b[8*i:]
		raw[i] = bpf.RawInstruction{
			Op: binary.NativeEndian.Uint16(ins), Jt: ins[2], Jf: ins[3],
			K: binary.NativeEndian.Uint32(ins[4:]),
		}
	}
	return raw, nil
}
