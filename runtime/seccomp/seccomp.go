// Package seccomp turns seccomp profiles into the BPF programs the kernel
// runs on every system call of a container. It is pure Go and touches
// nothing: the init stage installs the bytes it is given (Install).
//
// Profiles are in docker's JSON format (an OCI LinuxSeccomp with docker's
// includes/excludes conditions), which is what kubelet's Localhost profiles
// are written in. RuntimeDefault is docker's and containerd's default
// profile, taken as data from github.com/moby/profiles/seccomp; its rules
// conditioned on capabilities are evaluated against the container's
// capability set and those conditioned on a kernel version against the
// running kernel.
//
// The compiler is our own, on golang.org/x/net/bpf's assembler (see
// compile.go): github.com/elastic/go-seccomp-bpf, the pure-Go alternative,
// has no masked-equal comparison, which the default profile needs for
// clone's namespace flags, and no per-rule errno, which it needs for
// clone3 (ENOSYS).
package seccomp

//go:generate go run gen_syscalls.go

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Program is a compiled filter, as seccomp(SECCOMP_SET_MODE_FILTER) takes
// it. It is sent as JSON to the init stage.
type Program struct {
	// Filter is the struct sock_filter array in the machine's byte order.
	Filter []byte
	// Flags are SECCOMP_FILTER_FLAG_* the profile asked for.
	Flags uint
}

// Len returns the number of BPF instructions.
func (p *Program) Len() int { return len(p.Filter) / 8 }

// DefaultProfile returns docker's default profile. Every call returns a
// fresh copy.
func DefaultProfile() *moby.Seccomp { return moby.DefaultProfile() }

// ParseProfile decodes a profile in docker's JSON format (a plain OCI
// LinuxSeccomp is one too).
func ParseProfile(data []byte) (*moby.Seccomp, error) {
	var p moby.Seccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("decode seccomp profile: %w", err)
	}
	if p.DefaultAction == "" {
		return nil, errors.New("seccomp profile has no defaultAction")
	}
	return &p, nil
}

// Compile returns the program of profile for a container whose capability
// set (the CAP_* names of its bounding set, the effective set of its root)
// is caps.
func Compile(profile *moby.Seccomp, caps []string) (*Program, error) {
	// The moby package resolves includes/excludes for the running kernel,
	// GOARCH and the capabilities it finds in the spec's bounding set.
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	data, err := json.Marshal(profile)
	if err != nil {
		return nil, fmt.Errorf("encode seccomp profile: %w", err)
	}
	resolved, err := moby.LoadProfile(string(data), spec)
	if err != nil {
		return nil, fmt.Errorf("resolve seccomp profile: %w", err)
	}
	if resolved == nil {
		return nil, errors.New("seccomp profile has neither a default action nor rules")
	}
	return compile(resolved, syscallNumbers)
}

// maxCached bounds the cache; Localhost profiles edited many times would
// otherwise grow it without end. Past it the cache starts over.
const maxCached = 64

// Cache compiles each (profile, capability set) once. The zero value is
// ready; it is safe for concurrent use. Programs it returns are shared:
// treat them as read-only.
type Cache struct {
	mu       sync.Mutex
	programs map[string]*Program
}

// RuntimeDefault returns the program of docker's default profile for caps.
func (c *Cache) RuntimeDefault(caps []string) (*Program, error) {
	return c.get("RuntimeDefault", caps, func() (*moby.Seccomp, error) { return DefaultProfile(), nil })
}

// Localhost returns the program of the profile in data for caps.
func (c *Cache) Localhost(data []byte, caps []string) (*Program, error) {
	key := fmt.Sprintf("Localhost/%x", sha256.Sum256(data))
	return c.get(key, caps, func() (*moby.Seccomp, error) { return ParseProfile(data) })
}

func (c *Cache) get(profile string, caps []string, load func() (*moby.Seccomp, error)) (*Program, error) {
	caps = slices.Sorted(slices.Values(caps))
	key := profile + "\x00" + strings.Join(caps, ",")
	c.mu.Lock()
	p, ok := c.programs[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	prof, err := load()
	if err != nil {
		return nil, err
	}
	if p, err = Compile(prof, caps); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.programs == nil || len(c.programs) >= maxCached {
		c.programs = make(map[string]*Program)
	}
	c.programs[key] = p
	return p, nil
}
