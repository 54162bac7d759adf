package netsetup

import (
	"bufio"
	"bytes"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Kubernetes' limits on a pod's resolver configuration (the expanded DNS
// configuration, GA since 1.28): kubelet truncates beyond them.
const (
	maxNameservers     = 3
	maxSearchPaths     = 32
	maxSearchListChars = 2048
	maxSearchNameChars = 253 // glibc aborts on longer search names
)

// resolvConf is the content of a resolv.conf that matters to a pod.
type resolvConf struct {
	nameservers []string
	searches    []string
	options     []string
}

// ResolvConf returns the resolv.conf of a pod, following kubelet:
//
//   - dnsPolicy Default takes the host's configuration, hostResolv. There is
//     no cluster DNS service here, so ClusterFirst and
//     ClusterFirstWithHostNet fall back to Default, as kubelet does when it
//     has no cluster DNS configured.
//   - Loopback nameservers of the host (systemd-resolved's stub 127.0.0.53)
//     are unreachable from the pod's network namespace: they are replaced by
//     the upstream servers listed in resolvedUpstream (systemd-resolved's
//     /run/systemd/resolve/resolv.conf; nil if there is none).
//   - dnsPolicy None starts empty.
//   - pod.Spec.DNSConfig is then merged in: nameservers and search domains
//     appended without duplicates, options overriding the host's by name.
//   - Kubernetes' limits apply: 3 nameservers; 32 search domains of at most
//     253 characters, 2048 characters in all.
func ResolvConf(pod *corev1.Pod, hostResolv, resolvedUpstream []byte) []byte {
	var conf resolvConf
	if pod.Spec.DNSPolicy != corev1.DNSNone {
		conf = parseResolvConf(hostResolv)
		conf.nameservers = replaceLoopback(conf.nameservers, parseResolvConf(resolvedUpstream).nameservers)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		conf.nameservers = appendNew(conf.nameservers, dc.Nameservers...)
		conf.searches = appendNew(conf.searches, trimDots(dc.Searches)...)
		conf.options = mergeOptions(conf.options, dc.Options)
	}
	conf.nameservers = conf.nameservers[:min(len(conf.nameservers), maxNameservers)]
	conf.searches = limitSearches(conf.searches)
	return conf.render()
}

// parseResolvConf reads the nameserver, search and options lines of a
// resolv.conf. As in glibc, the last search line wins and options accumulate.
func parseResolvConf(b []byte) resolvConf {
	var conf resolvConf
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) > 1 {
				conf.nameservers = appendNew(conf.nameservers, fields[1])
			}
		case "search":
			conf.searches = appendNew(nil, trimDots(fields[1:])...)
		case "options":
			conf.options = mergeOptions(conf.options, parseOptions(fields[1:]))
		}
	}
	return conf
}

// trimDots drops the trailing dot of fully qualified search domains, so
// "example.com." and "example.com" count once.
func trimDots(domains []string) []string {
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		if d = strings.TrimSuffix(d, "."); d != "" {
			out = append(out, d)
		}
	}
	return out
}

func parseOptions(fields []string) []corev1.PodDNSConfigOption {
	opts := make([]corev1.PodDNSConfigOption, 0, len(fields))
	for _, f := range fields {
		name, value, hasValue := strings.Cut(f, ":")
		opt := corev1.PodDNSConfigOption{Name: name}
		if hasValue {
			opt.Value = &value
		}
		opts = append(opts, opt)
	}
	return opts
}

// replaceLoopback replaces the loopback addresses in servers by upstream,
// once, at the position of the first loopback server.
func replaceLoopback(servers, upstream []string) []string {
	var out []string
	replaced := false
	for _, s := range servers {
		if !isLoopback(s) {
			out = appendNew(out, s)
			continue
		}
		if !replaced {
			for _, u := range upstream {
				if !isLoopback(u) {
					out = appendNew(out, u)
				}
			}
			replaced = true
		}
	}
	return out
}

func isLoopback(server string) bool {
	addr, err := netip.ParseAddr(server)
	return err == nil && addr.Unmap().IsLoopback()
}

// appendNew appends the items of add that list does not hold yet.
func appendNew(list []string, add ...string) []string {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// mergeOptions sets each option of add in opts, replacing an option of the
// same name in place and appending new ones, so the order is stable.
func mergeOptions(opts []string, add []corev1.PodDNSConfigOption) []string {
	for _, o := range add {
		s := o.Name
		if o.Value != nil {
			s += ":" + *o.Value
		}
		i := slices.IndexFunc(opts, func(have string) bool {
			name, _, _ := strings.Cut(have, ":")
			return name == o.Name
		})
		if i >= 0 {
			opts[i] = s
		} else {
			opts = append(opts, s)
		}
	}
	return opts
}

// limitSearches applies kubelet's limits: at most maxSearchPaths domains,
// domains longer than maxSearchNameChars dropped, then domains cut from the
// end until the search line fits in maxSearchListChars.
func limitSearches(searches []string) []string {
	searches = searches[:min(len(searches), maxSearchPaths)]
	searches = slices.DeleteFunc(searches, func(s string) bool { return len(s) > maxSearchNameChars })
	for len(searches) > 0 && len(strings.Join(searches, " ")) > maxSearchListChars {
		searches = searches[:len(searches)-1]
	}
	return searches
}

func (c resolvConf) render() []byte {
	var b bytes.Buffer
	for _, ns := range c.nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(c.searches) > 0 {
		b.WriteString("search " + strings.Join(c.searches, " ") + "\n")
	}
	if len(c.options) > 0 {
		b.WriteString("options " + strings.Join(c.options, " ") + "\n")
	}
	return b.Bytes()
}
