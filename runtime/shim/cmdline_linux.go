package shim

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shownCmdline holds the command line set by setCmdline. The kernel keeps
// only its address: it must stay reachable from a global (a local might
// live on a goroutine stack, which Go moves), and Go's heap does not move.
var shownCmdline []byte

// prctlMMMap is the kernel's struct prctl_mm_map.
type prctlMMMap struct {
	StartCode, EndCode, StartData, EndData uint64
	StartBrk, Brk, StartStack              uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd     uint64
	Auxv                                   uint64
	AuxvSize                               uint32
	ExeFD                                  uint32
}

// setCmdline makes /proc/self/cmdline, which ps and Serves read, show args:
// a bound spare then reads as the shim launched for its pod. The original
// argument area, on the stack, is too short for a pod directory, so the
// kernel's record of it is pointed at a new buffer. PR_SET_MM_MAP does that
// without CAP_SYS_RESOURCE (which PR_SET_MM_ARG_START needs, and which a
// root shim in a container may lack); it replaces the whole memory map
// record, so every other field is passed back as /proc/self/stat and brk
// report it, and auxv and the exe link are left alone.
func setCmdline(args ...string) error {
	m, err := currentMMMap()
	if err != nil {
		return err
	}
	buf := []byte(strings.Join(args, "\x00") + "\x00")
	m.ArgStart = uint64(uintptr(unsafe.Pointer(&buf[0])))
	m.ArgEnd = m.ArgStart + uint64(len(buf))
	m.ExeFD = ^uint32(0)
	shownCmdline = buf
	_, _, errno := unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP,
		uintptr(unsafe.Pointer(m)), unsafe.Sizeof(*m), 0, 0)
	if errno != 0 {
		return fmt.Errorf("set command line: %w", errno)
	}
	return nil
}

// currentMMMap reads the process's memory map record from /proc/self/stat
// (fields 26-28 and 45-51, see proc(5)) and the program break.
func currentMMMap() (*prctlMMMap, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return nil, err
	}
	// The command name, field 2, is in parentheses and may hold anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/self/stat: no command name")
	}
	fields := strings.Fields(string(b[i+1:]))
	field := func(n int) (uint64, error) {
		if n-3 >= len(fields) {
			return 0, fmt.Errorf("parse /proc/self/stat: %d fields", len(fields)+2)
		}
		return strconv.ParseUint(fields[n-3], 10, 64)
	}
	var m prctlMMMap
	for n, dst := range map[int]*uint64{
		26: &m.StartCode, 27: &m.EndCode, 28: &m.StartStack,
		45: &m.StartData, 46: &m.EndData, 47: &m.StartBrk,
		48: &m.ArgStart, 49: &m.ArgEnd, 50: &m.EnvStart, 51: &m.EnvEnd,
	} {
		if *dst, err = field(n); err != nil {
			return nil, fmt.Errorf("parse /proc/self/stat field %d: %w", n, err)
		}
	}
	brk, _, errno := unix.RawSyscall(unix.SYS_BRK, 0, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("read the program break: %w", errno)
	}
	m.Brk = uint64(brk)
	return &m, nil
}
