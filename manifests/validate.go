package manifests

import (
	"maps"
	"math"
	"net/netip"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/peapod/peapod/runtime/image"
)

// maxUserNSID is the largest ID inside a pod's own user namespace, which
// maps 65536 IDs.
const maxUserNSID = 65535

// maxHostID is the largest host ID: (uid_t)-1 means "no change" to
// setresuid and cannot be a process's ID.
const maxHostID = math.MaxUint32 - 1

var (
	restartPolicies = sets.New(corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)
	dnsPolicies     = sets.New(corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone)
	protocols       = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP)
	hostPathTypes   = sets.New(corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory,
		corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev)
	// fieldRefPaths are the downward API fields the runtime can fill in.
	fieldRefPaths = sets.New("metadata.name", "metadata.namespace", "metadata.uid", "status.podIP", "status.podIPs")
	// reservedAnnotations are set by the decoder.
	reservedAnnotations = []string{AnnotationSource, AnnotationHash, AnnotationManifest}
)

// validate checks the values of a defaulted pod's honoured fields;
// checkFields has already dealt with the others.
func validate(f *findings, pod *corev1.Pod, policy Policy) {
	validateMeta(f, &pod.ObjectMeta, field.NewPath("metadata"))
	validateAppArmorAnnotations(f, pod.Annotations, field.NewPath("metadata", "annotations"))
	spec := field.NewPath("spec")
	validatePodOptions(f, &pod.Spec, spec)
	validateSysctls(f, &pod.Spec, policy, spec.Child("securityContext", "sysctls"))
	volumes := validateVolumes(f, pod.Spec.Volumes, spec.Child("volumes"))
	validateContainers(f, &pod.Spec, volumes, spec.Child("containers"))
	validateInitContainers(f, &pod.Spec, volumes, spec.Child("initContainers"))
	validateHostPorts(f, pod.Spec.Containers, spec.Child("containers"))
	warnHostPaths(f, &pod.Spec, spec)
}

func validateMeta(f *findings, meta *metav1.ObjectMeta, p *field.Path) {
	if meta.Name == "" {
		f.fail(p.Child("name"), "required")
	} else {
		f.check(p.Child("name"), validation.IsDNS1123Subdomain(meta.Name))
	}
	f.check(p.Child("namespace"), validation.IsDNS1123Label(meta.Namespace))
	f.addAll(metavalidation.ValidateLabels(meta.Labels, p.Child("labels")))
	f.addAll(apivalidation.ValidateAnnotations(meta.Annotations, p.Child("annotations")))
	for _, key := range reservedAnnotations {
		if _, ok := meta.Annotations[key]; ok {
			f.fail(p.Child("annotations").Key(key), "reserved: peapod sets it")
		}
	}
}

func validatePodOptions(f *findings, spec *corev1.PodSpec, p *field.Path) {
	if !restartPolicies.Has(spec.RestartPolicy) {
		f.fail(p.Child("restartPolicy"), "must be Always, OnFailure or Never, not %q", spec.RestartPolicy)
	}
	if *spec.TerminationGracePeriodSeconds < 0 {
		f.fail(p.Child("terminationGracePeriodSeconds"), "must not be negative")
	}
	if spec.Hostname != "" {
		f.check(p.Child("hostname"), validation.IsDNS1123Label(spec.Hostname))
	}
	if spec.Subdomain != "" {
		f.check(p.Child("subdomain"), validation.IsDNS1123Label(spec.Subdomain))
	}
	if spec.OS != nil && spec.OS.Name != corev1.Linux {
		f.fail(p.Child("os", "name"), "peapod runs linux pods, not %q", spec.OS.Name)
	}
	if spec.HostUsers != nil && !*spec.HostUsers && spec.HostNetwork {
		f.fail(p.Child("hostUsers"), "must be true or unset with hostNetwork: true (as in Kubernetes)")
	}
	if sc := spec.SecurityContext; sc != nil {
		validateIDs(f, sc.RunAsUser, sc.RunAsGroup, spec, p.Child("securityContext"))
		validateSeccomp(f, sc.SeccompProfile, p.Child("securityContext", "seccompProfile"))
		validateAppArmor(f, sc.AppArmorProfile, p.Child("securityContext", "appArmorProfile"))
	}
	validateDNS(f, spec, p)
}

func validateDNS(f *findings, spec *corev1.PodSpec, p *field.Path) {
	if !dnsPolicies.Has(spec.DNSPolicy) {
		f.fail(p.Child("dnsPolicy"), "must be ClusterFirst, ClusterFirstWithHostNet, Default or None, not %q", spec.DNSPolicy)
	}
	cfg := spec.DNSConfig
	if cfg == nil {
		if spec.DNSPolicy == corev1.DNSNone {
			f.fail(p.Child("dnsConfig"), "required with dnsPolicy: None")
		}
		return
	}
	p = p.Child("dnsConfig")
	if len(cfg.Nameservers) > 3 {
		f.fail(p.Child("nameservers"), "at most 3 nameservers, got %d", len(cfg.Nameservers))
	}
	for i, ns := range cfg.Nameservers {
		f.addAll(validation.IsValidIP(p.Child("nameservers").Index(i), ns))
	}
	if len(cfg.Searches) > 32 {
		f.fail(p.Child("searches"), "at most 32 search domains, got %d", len(cfg.Searches))
	}
	for i, s := range cfg.Searches {
		f.check(p.Child("searches").Index(i), validation.IsDNS1123Subdomain(strings.TrimSuffix(s, ".")))
	}
	for i, o := range cfg.Options {
		if o.Name == "" {
			f.fail(p.Child("options").Index(i).Child("name"), "required")
		}
	}
}

// validateVolumes checks the volumes and returns their names.
func validateVolumes(f *findings, volumes []corev1.Volume, p *field.Path) sets.Set[string] {
	names := sets.New[string]()
	for i, v := range volumes {
		vp := p.Index(i)
		validateName(f, vp.Child("name"), v.Name, names)
		switch {
		case v.EmptyDir != nil && v.HostPath != nil:
			f.fail(vp, "set one of emptyDir and hostPath, not both")
		case v.EmptyDir != nil:
			validateEmptyDir(f, v.EmptyDir, vp.Child("emptyDir"))
		case v.HostPath != nil:
			validateHostPath(f, v.HostPath, vp.Child("hostPath"))
		default:
			// Only an empty source object ("configMap: {}") gets here;
			// checkFields rejects the others.
			f.fail(vp, "peapod has emptyDir and hostPath volumes only")
		}
	}
	return names
}

// validateName checks a DNS-label name that must be unique among names,
// and adds it.
func validateName(f *findings, p *field.Path, name string, names sets.Set[string]) {
	switch {
	case name == "":
		f.fail(p, "required")
	case names.Has(name):
		f.fail(p, "duplicate name %q", name)
	default:
		f.check(p, validation.IsDNS1123Label(name))
	}
	names.Insert(name)
}

func validateEmptyDir(f *findings, e *corev1.EmptyDirVolumeSource, p *field.Path) {
	if e.Medium != corev1.StorageMediumDefault && e.Medium != corev1.StorageMediumMemory {
		f.fail(p.Child("medium"), `must be "" (disk) or Memory, not %q`, e.Medium)
	}
	if e.SizeLimit != nil && e.SizeLimit.Sign() < 0 {
		f.fail(p.Child("sizeLimit"), "must not be negative")
	}
}

func validateHostPath(f *findings, h *corev1.HostPathVolumeSource, p *field.Path) {
	validateAbsolute(f, p.Child("path"), h.Path)
	validateNoBacksteps(f, p.Child("path"), h.Path)
	if h.Type != nil && !hostPathTypes.Has(*h.Type) {
		f.fail(p.Child("type"), "unknown hostPath type %q", *h.Type)
	}
}

// validateAbsolute checks that a path is set and absolute.
func validateAbsolute(f *findings, p *field.Path, s string) {
	switch {
	case s == "":
		f.fail(p, "required")
	case !path.IsAbs(s):
		f.fail(p, "must be an absolute path, not %q", s)
	}
}

// validateNoBacksteps rejects a ".." element in a path, so that the path
// says where it leads (as Kubernetes does for hostPath and subPath).
func validateNoBacksteps(f *findings, p *field.Path, s string) {
	if slices.Contains(strings.Split(s, "/"), "..") {
		f.fail(p, "must not contain '..'")
	}
}

func validateContainers(f *findings, spec *corev1.PodSpec, volumes sets.Set[string], p *field.Path) {
	if len(spec.Containers) == 0 {
		f.fail(p, "at least one container is required")
	}
	names := sets.New[string]()
	for i := range spec.Containers {
		validateContainer(f, spec, &spec.Containers[i], volumes, names, p.Index(i))
	}
}

// validateContainer checks one app or init container; names holds the
// names of the pod's containers seen so far.
func validateContainer(f *findings, spec *corev1.PodSpec, c *corev1.Container, volumes, names sets.Set[string], cp *field.Path) {
	validateName(f, cp.Child("name"), c.Name, names)
	validateImage(f, cp.Child("image"), c.Image)
	validatePullPolicy(f, cp.Child("imagePullPolicy"), c.ImagePullPolicy)
	if c.WorkingDir != "" {
		validateAbsolute(f, cp.Child("workingDir"), c.WorkingDir)
	}
	validatePorts(f, c.Ports, spec.HostNetwork, cp.Child("ports"))
	validateEnv(f, c.Env, cp.Child("env"))
	validateResources(f, &c.Resources, cp.Child("resources"))
	validateMounts(f, c.VolumeMounts, volumes, cp.Child("volumeMounts"))
	if sc := c.SecurityContext; sc != nil {
		validateIDs(f, sc.RunAsUser, sc.RunAsGroup, spec, cp.Child("securityContext"))
		validateSeccomp(f, sc.SeccompProfile, cp.Child("securityContext", "seccompProfile"))
		validateAppArmor(f, sc.AppArmorProfile, cp.Child("securityContext", "appArmorProfile"))
	}
	validateCapabilities(f, c.SecurityContext, cp.Child("securityContext"))
	validateNonRoot(f, c, spec.SecurityContext, cp)
	validateProbesAndHooks(f, spec, c, cp)
}

// validateImage checks an image reference as the runtime will read it: a
// registry reference, or a file transport with an absolute, clean path.
func validateImage(f *findings, p *field.Path, ref string) {
	if ref == "" {
		f.fail(p, "required")
		return
	}
	if _, err := image.ParseReference(ref); err != nil {
		f.fail(p, "%v", err)
	}
}

// validatePullPolicy accepts Kubernetes' three policies; empty is
// defaulted where it is used (from the image's tag), not here, so that
// the pod's UID does not depend on it.
func validatePullPolicy(f *findings, p *field.Path, policy corev1.PullPolicy) {
	switch policy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		f.fail(p, "unsupported value %q: Always, IfNotPresent or Never", policy)
	}
}

func validatePorts(f *findings, ports []corev1.ContainerPort, hostNetwork bool, p *field.Path) {
	names := sets.New[string]()
	for i, port := range ports {
		pp := p.Index(i)
		f.check(pp.Child("containerPort"), validation.IsValidPortNum(int(port.ContainerPort)))
		if port.HostPort != 0 {
			f.check(pp.Child("hostPort"), validation.IsValidPortNum(int(port.HostPort)))
		}
		if hostNetwork && port.HostPort != 0 && port.HostPort != port.ContainerPort {
			f.fail(pp.Child("hostPort"), "must equal containerPort with hostNetwork: true")
		}
		if !protocols.Has(port.Protocol) {
			f.fail(pp.Child("protocol"), "must be TCP or UDP, not %q", port.Protocol)
		}
		if port.HostIP != "" {
			f.addAll(validation.IsValidIP(pp.Child("hostIP"), port.HostIP))
		}
		if port.Name != "" {
			f.check(pp.Child("name"), validation.IsValidPortName(port.Name))
			if names.Has(port.Name) {
				f.fail(pp.Child("name"), "duplicate port name %q", port.Name)
			}
			names.Insert(port.Name)
		}
	}
}

// validateHostPorts rejects two ports of the pod that would bind the same
// host port: same number and protocol, and the same host IP or either one
// unspecified (all addresses).
func validateHostPorts(f *findings, containers []corev1.Container, p *field.Path) {
	type hostPort struct {
		port     int32
		protocol corev1.Protocol
	}
	// bound holds the host IPs of each host port, "" for all addresses.
	bound := make(map[hostPort]sets.Set[string])
	for i, c := range containers {
		for j, port := range c.Ports {
			if port.HostPort == 0 {
				continue
			}
			key := hostPort{port.HostPort, port.Protocol}
			ip := hostIPKey(port.HostIP)
			ips := bound[key]
			if ips == nil {
				ips = sets.New[string]()
				bound[key] = ips
			}
			if ips.Has(ip) || ips.Has("") || ip == "" && ips.Len() > 0 {
				f.fail(p.Index(i).Child("ports").Index(j).Child("hostPort"),
					"host port %d/%s is already used in this pod", port.HostPort, port.Protocol)
			}
			ips.Insert(ip)
		}
	}
}

// hostIPKey returns "" for an unset or unspecified host IP (all
// addresses), else the IP.
func hostIPKey(ip string) string {
	if addr, err := netip.ParseAddr(ip); err == nil && addr.IsUnspecified() {
		return ""
	}
	return ip
}

func validateEnv(f *findings, env []corev1.EnvVar, p *field.Path) {
	for i, e := range env {
		ep := p.Index(i)
		if e.Name == "" {
			f.fail(ep.Child("name"), "required")
		} else {
			f.check(ep.Child("name"), validation.IsRelaxedEnvVarName(e.Name))
		}
		if e.ValueFrom == nil {
			continue
		}
		if e.Value != "" {
			f.fail(ep, "set one of value and valueFrom, not both")
		}
		validateFieldRef(f, e.ValueFrom.FieldRef, ep.Child("valueFrom", "fieldRef"))
	}
}

func validateFieldRef(f *findings, ref *corev1.ObjectFieldSelector, p *field.Path) {
	if ref == nil {
		f.fail(p, "required: peapod fills env from fieldRef only")
		return
	}
	if ref.APIVersion != "v1" {
		f.fail(p.Child("apiVersion"), "must be v1, not %q", ref.APIVersion)
	}
	if !fieldRefPaths.Has(ref.FieldPath) {
		f.fail(p.Child("fieldPath"), "unsupported field %q: peapod provides %s",
			ref.FieldPath, strings.Join(sets.List(fieldRefPaths), ", "))
	}
}

func validateResources(f *findings, r *corev1.ResourceRequirements, p *field.Path) {
	for _, name := range slices.Sorted(maps.Keys(r.Limits)) {
		if q := r.Limits[name]; q.Sign() < 0 {
			f.fail(p.Child("limits").Key(string(name)), "must not be negative")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		q, rp := r.Requests[name], p.Child("requests").Key(string(name))
		if q.Sign() < 0 {
			f.fail(rp, "must not be negative")
		}
		if limit, ok := r.Limits[name]; ok && q.Cmp(limit) > 0 {
			f.fail(rp, "must not exceed the limit %s, got %s", limit.String(), q.String())
		}
	}
}

func validateMounts(f *findings, mounts []corev1.VolumeMount, volumes sets.Set[string], p *field.Path) {
	paths := sets.New[string]()
	for i, m := range mounts {
		mp := p.Index(i)
		if !volumes.Has(m.Name) {
			f.fail(mp.Child("name"), "no volume named %q in spec.volumes", m.Name)
		}
		validateAbsolute(f, mp.Child("mountPath"), m.MountPath)
		if clean := path.Clean(m.MountPath); paths.Has(clean) {
			f.fail(mp.Child("mountPath"), "duplicate mount path %q", m.MountPath)
		} else {
			paths.Insert(clean)
		}
		if path.IsAbs(m.SubPath) {
			f.fail(mp.Child("subPath"), "must be a relative path, not %q", m.SubPath)
		}
		validateNoBacksteps(f, mp.Child("subPath"), m.SubPath)
	}
}

// validateIDs checks the IDs of a pod or container security context. A pod
// in its own user namespace (hostUsers unset or false) has 65536 IDs.
func validateIDs(f *findings, uid, gid *int64, spec *corev1.PodSpec, p *field.Path) {
	maxID := int64(maxUserNSID)
	if spec.HostUsers != nil && *spec.HostUsers {
		maxID = maxHostID
	}
	validateID(f, p.Child("runAsUser"), uid, maxID)
	validateID(f, p.Child("runAsGroup"), gid, maxID)
}

func validateID(f *findings, p *field.Path, id *int64, maxID int64) {
	if id != nil && (*id < 0 || *id > maxID) {
		f.fail(p, "must be within 0..%d, not %d", maxID, *id)
	}
}

// validateNonRoot refuses runAsNonRoot with a runAsUser of 0, which no
// image can make right. Without a runAsUser the image's user decides; the
// runtime checks it when the container starts, as kubelet does.
func validateNonRoot(f *findings, c *corev1.Container, pod *corev1.PodSecurityContext, p *field.Path) {
	nonRoot, uid := false, (*int64)(nil)
	if pod != nil {
		nonRoot, uid = overrideNonRoot(nonRoot, uid, pod.RunAsNonRoot, pod.RunAsUser)
	}
	if sc := c.SecurityContext; sc != nil {
		nonRoot, uid = overrideNonRoot(nonRoot, uid, sc.RunAsNonRoot, sc.RunAsUser)
	}
	if nonRoot && uid != nil && *uid == 0 {
		f.fail(p.Child("securityContext", "runAsNonRoot"), "the container would run as root (runAsUser 0): set runAsUser to a non-zero ID")
	}
}

// overrideNonRoot applies the settings of a security context over those
// inherited from the level above.
func overrideNonRoot(nonRoot bool, uid *int64, setNonRoot *bool, setUID *int64) (bool, *int64) {
	if setNonRoot != nil {
		nonRoot = *setNonRoot
	}
	if setUID != nil {
		uid = setUID
	}
	return nonRoot, uid
}
