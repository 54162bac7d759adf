package seccomp

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
)

// label names a place in a program being assembled.
type label int

// next is the instruction after a jump: falling through.
const next label = -1

type itemKind int

const (
	plain  itemKind = iota
	cond            // conditional jump to labels t and f
	always          // unconditional jump to label t
	mark            // places label t here; no instruction
)

type item struct {
	kind itemKind
	ins  bpf.Instruction
	test bpf.JumpTest
	val  uint32
	t, f label
}

// asm assembles a program whose jumps name labels. Conditional jumps reach
// at most 255 instructions ahead (BPF's 8-bit offsets): the code keeps them
// short and takes far branches with an unconditional jump, which reaches
// anywhere.
type asm struct {
	items  []item
	labels int
}

func (a *asm) newLabel() label {
	a.labels++
	return label(a.labels - 1)
}

func (a *asm) mark(l label) { a.items = append(a.items, item{kind: mark, t: l}) }

func (a *asm) load(off uint32) {
	a.items = append(a.items, item{ins: bpf.LoadAbsolute{Off: off, Size: 4}})
}

func (a *asm) and(v uint32) {
	a.items = append(a.items, item{ins: bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: v}})
}

func (a *asm) ret(v uint32) { a.items = append(a.items, item{ins: bpf.RetConstant{Val: v}}) }

func (a *asm) jump(test bpf.JumpTest, val uint32, t, f label) {
	a.items = append(a.items, item{kind: cond, test: test, val: val, t: t, f: f})
}

func (a *asm) goTo(l label) { a.items = append(a.items, item{kind: always, t: l}) }

// tree finds the number in A among segs (sorted, the first starting at 0)
// by binary search and ends in each segment's outcome.
func (a *asm) tree(segs []segment, def uint32) {
	if len(segs) == 1 {
		a.outcome(segs[0], def)
		return
	}
	mid := len(segs) / 2
	left, right := a.newLabel(), a.newLabel()
	a.jump(bpf.JumpGreaterOrEqual, segs[mid].start, next, left)
	a.goTo(right)
	a.mark(left)
	a.tree(segs[:mid], def)
	a.mark(right)
	a.tree(segs[mid:], def)
}

// outcome returns a segment's action, trying its rules in order.
func (a *asm) outcome(s segment, def uint32) {
	for _, r := range s.rules {
		fail := a.newLabel()
		for _, arg := range r.args {
			a.arg(arg, fail)
		}
		a.ret(r.ret)
		a.mark(fail)
	}
	if s.rules == nil {
		a.ret(s.ret)
		return
	}
	a.ret(def)
}

// arg falls through when the 64-bit argument compares as asked, and jumps
// to fail when not. Each half is loaded and compared on its own: the high
// halves decide unless they are equal.
func (a *asm) arg(c specs.LinuxSeccompArg, fail label) {
	lo, hi := uint32(offArgs+8*c.Index), uint32(offArgs+8*c.Index+4)
	vlo, vhi := uint32(c.Value), uint32(c.Value>>32)
	ok := a.newLabel()
	switch c.Op {
	case specs.OpEqualTo:
		a.load(hi)
		a.jump(bpf.JumpEqual, vhi, next, fail)
		a.load(lo)
		a.jump(bpf.JumpEqual, vlo, next, fail)
	case specs.OpNotEqual:
		a.load(hi)
		a.jump(bpf.JumpEqual, vhi, next, ok)
		a.load(lo)
		a.jump(bpf.JumpEqual, vlo, fail, ok)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.load(hi)
		a.jump(bpf.JumpGreaterThan, vhi, ok, next)
		a.jump(bpf.JumpEqual, vhi, next, fail)
		a.load(lo)
		test := bpf.JumpGreaterThan
		if c.Op == specs.OpGreaterEqual {
			test = bpf.JumpGreaterOrEqual
		}
		a.jump(test, vlo, ok, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.load(hi)
		a.jump(bpf.JumpGreaterThan, vhi, fail, next)
		a.jump(bpf.JumpEqual, vhi, next, ok)
		a.load(lo)
		// lo < v fails when lo >= v; lo <= v fails when lo > v.
		test := bpf.JumpGreaterOrEqual
		if c.Op == specs.OpLessEqual {
			test = bpf.JumpGreaterThan
		}
		a.jump(test, vlo, fail, ok)
	case specs.OpMaskedEqual:
		// (arg & Value) == ValueTwo, as libseccomp defines it.
		wlo, whi := uint32(c.ValueTwo), uint32(c.ValueTwo>>32)
		a.load(hi)
		a.and(vhi)
		a.jump(bpf.JumpEqual, whi, next, fail)
		a.load(lo)
		a.and(vlo)
		a.jump(bpf.JumpEqual, wlo, next, fail)
	}
	a.mark(ok)
}

// assemble resolves the labels and returns the program.
func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	pos := make([]int, a.labels)
	n := 0
	for _, it := range a.items {
		if it.kind == mark {
			pos[it.t] = n
			continue
		}
		n++
	}
	prog := make([]bpf.Instruction, 0, n)
	for _, it := range a.items {
		at := len(prog)
		skip := func(l label) int {
			if l == next {
				return 0
			}
			return pos[l] - at - 1
		}
		switch it.kind {
		case mark:
			continue
		case plain:
			prog = append(prog, it.ins)
		case always:
			prog = append(prog, bpf.Jump{Skip: uint32(skip(it.t))})
		case cond:
			t, f := skip(it.t), skip(it.f)
			if t < 0 || t > 255 || f < 0 || f > 255 {
				return nil, fmt.Errorf("seccomp filter: conditional jump of %d/%d instructions at %d", t, f, at)
			}
			prog = append(prog, bpf.JumpIf{Cond: it.test, Val: it.val, SkipTrue: uint8(t), SkipFalse: uint8(f)})
		}
	}
	return bpf.Assemble(prog)
}
