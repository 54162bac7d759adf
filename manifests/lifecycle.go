package manifests

import (
	"maps"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Probes, lifecycle hooks, init containers and sidecars: their field
// decisions and their validation, as the Kubernetes API checks them.

// probeRules are the fields of a probe, below its path.
var probeRules = map[string]rule{
	"":                               {use: honoured},
	".exec":                          {use: honoured},
	".exec.command":                  {use: honoured},
	".httpGet":                       {use: honoured},
	".httpGet.path":                  {use: honoured},
	".httpGet.port":                  {use: honoured},
	".httpGet.host":                  {use: honoured},
	".httpGet.scheme":                {use: honoured},
	".httpGet.httpHeaders":           {use: honoured},
	".httpGet.httpHeaders[].name":    {use: honoured},
	".httpGet.httpHeaders[].value":   {use: honoured},
	".tcpSocket":                     {use: honoured},
	".tcpSocket.port":                {use: honoured},
	".tcpSocket.host":                {use: honoured},
	".grpc":                          {use: honoured},
	".grpc.port":                     {use: honoured},
	".grpc.service":                  {use: honoured},
	".initialDelaySeconds":           {use: honoured},
	".timeoutSeconds":                {use: honoured},
	".periodSeconds":                 {use: honoured},
	".successThreshold":              {use: honoured},
	".failureThreshold":              {use: honoured},
	".terminationGracePeriodSeconds": {use: honoured},
}

// hookRules are the fields of a lifecycle hook, below its path.
var hookRules = map[string]rule{
	"":                             {use: honoured},
	".exec":                        {use: honoured},
	".exec.command":                {use: honoured},
	".httpGet":                     {use: honoured},
	".httpGet.path":                {use: honoured},
	".httpGet.port":                {use: honoured},
	".httpGet.host":                {use: honoured},
	".httpGet.scheme":              {use: honoured},
	".httpGet.httpHeaders":         {use: honoured},
	".httpGet.httpHeaders[].name":  {use: honoured},
	".httpGet.httpHeaders[].value": {use: honoured},
	".sleep":                       {use: honoured},
	".sleep.seconds":               {use: honoured},
	".tcpSocket":                   {use: rejected, reason: "kubelet does not run tcpSocket hooks; use exec, httpGet or sleep"},
}

// withLifecycle adds to rules the decisions about probes and hooks of app
// containers, and makes init containers honoured with the same decisions as
// app containers, except those that only sidecars may use.
func withLifecycle(rules map[string]rule) map[string]rule {
	const c = "spec.containers[]"
	for _, probe := range []string{".livenessProbe", ".readinessProbe", ".startupProbe"} {
		for k, r := range probeRules {
			rules[c+probe+k] = r
		}
	}
	rules[c+".terminationMessagePath"] = rule{use: honoured}
	rules[c+".terminationMessagePolicy"] = rule{use: honoured}
	rules[c+".lifecycle"] = rule{use: honoured}
	rules[c+".lifecycle.stopSignal"] = rule{use: rejected, reason: "not supported yet: containers stop with SIGTERM"}
	for _, hook := range []string{".postStart", ".preStop"} {
		for k, r := range hookRules {
			rules[c+".lifecycle"+hook+k] = r
		}
	}
	for k, r := range maps.Clone(rules) {
		if rest, ok := strings.CutPrefix(k, c); ok {
			rules["spec.initContainers[]"+rest] = r
		}
	}
	rules["spec.initContainers"] = rule{use: honoured}
	rules["spec.initContainers[].restartPolicy"] = rule{use: honoured}
	rules["spec.initContainers[].ports[].hostPort"] = rule{use: rejected, reason: "host ports of init containers are not mapped; publish the port from an app container"}
	return rules
}

var handlerSchemes = sets.New(corev1.URISchemeHTTP, corev1.URISchemeHTTPS)

// validateInitContainers checks the init containers as containers whose
// names the app containers must not reuse.
func validateInitContainers(f *findings, spec *corev1.PodSpec, volumes sets.Set[string], p *field.Path) {
	names := sets.New[string]()
	for i := range spec.Containers {
		names.Insert(spec.Containers[i].Name)
	}
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		cp := p.Index(i)
		if rp := c.RestartPolicy; rp != nil && *rp != corev1.ContainerRestartPolicyAlways {
			f.fail(cp.Child("restartPolicy"), "must be Always (a sidecar) or unset, not %q", *rp)
		}
		validateContainer(f, spec, c, volumes, names, cp)
	}
}

// validateProbesAndHooks checks a container's probes and hooks, which only
// app containers and sidecars may have, and its termination message.
func validateProbesAndHooks(f *findings, spec *corev1.PodSpec, c *corev1.Container, p *field.Path) {
	if tp := c.TerminationMessagePath; tp != "" {
		validateAbsolute(f, p.Child("terminationMessagePath"), tp)
		if path.Clean(tp) == "/" {
			f.fail(p.Child("terminationMessagePath"), "must name a file")
		}
	}
	switch c.TerminationMessagePolicy {
	case "", corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError:
	default:
		f.fail(p.Child("terminationMessagePolicy"), "must be File or FallbackToLogsOnError, not %q", c.TerminationMessagePolicy)
	}
	// c is an init container if it points into the pod's list of them.
	regularInit := false
	for i := range spec.InitContainers {
		if &spec.InitContainers[i] == c {
			regularInit = c.RestartPolicy == nil
		}
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, pr := range probes {
		if pr.probe == nil {
			continue
		}
		if regularInit {
			f.fail(p.Child(pr.name), "may not be set for init containers without restartPolicy: Always")
			continue
		}
		validateProbe(f, c, pr.probe, pr.name != "readinessProbe", p.Child(pr.name))
	}
	if c.Lifecycle == nil {
		return
	}
	if regularInit {
		f.fail(p.Child("lifecycle"), "may not be set for init containers without restartPolicy: Always")
		return
	}
	grace := int64(0)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	for _, h := range []struct {
		name    string
		handler *corev1.LifecycleHandler
	}{{"postStart", c.Lifecycle.PostStart}, {"preStop", c.Lifecycle.PreStop}} {
		if h.handler != nil {
			validateHook(f, c, h.handler, grace, p.Child("lifecycle", h.name))
		}
	}
}

// validateProbe checks one probe; only liveness and startup probes may set
// their own grace period, and their successThreshold must be 1.
func validateProbe(f *findings, c *corev1.Container, pr *corev1.Probe, killing bool, p *field.Path) {
	h := pr.ProbeHandler
	validateOneHandler(f, p, h.Exec != nil, h.HTTPGet != nil, h.TCPSocket != nil, h.GRPC != nil)
	if h.Exec != nil {
		validateCommand(f, h.Exec.Command, p.Child("exec", "command"))
	}
	if h.HTTPGet != nil {
		validateHTTPGet(f, c, h.HTTPGet, p.Child("httpGet"))
	}
	if h.TCPSocket != nil {
		validateHandlerPort(f, c, h.TCPSocket.Port, p.Child("tcpSocket", "port"))
	}
	if h.GRPC != nil {
		f.check(p.Child("grpc", "port"), validation.IsValidPortNum(int(h.GRPC.Port)))
	}
	for _, n := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", pr.InitialDelaySeconds}, {"timeoutSeconds", pr.TimeoutSeconds}, {"periodSeconds", pr.PeriodSeconds},
		{"successThreshold", pr.SuccessThreshold}, {"failureThreshold", pr.FailureThreshold},
	} {
		if n.v < 0 {
			f.fail(p.Child(n.name), "must not be negative")
		}
	}
	if killing && pr.SuccessThreshold > 1 {
		f.fail(p.Child("successThreshold"), "must be 1 for liveness and startup probes")
	}
	switch g := pr.TerminationGracePeriodSeconds; {
	case g == nil:
	case !killing:
		f.fail(p.Child("terminationGracePeriodSeconds"), "must not be set for readiness probes")
	case *g <= 0:
		f.fail(p.Child("terminationGracePeriodSeconds"), "must be positive")
	}
}

func validateHook(f *findings, c *corev1.Container, h *corev1.LifecycleHandler, grace int64, p *field.Path) {
	// A tcpSocket hook is rejected with the fields; count it here so that
	// it is not also reported as missing.
	validateOneHandler(f, p, h.Exec != nil, h.HTTPGet != nil, h.Sleep != nil, h.TCPSocket != nil)
	if h.Exec != nil {
		validateCommand(f, h.Exec.Command, p.Child("exec", "command"))
	}
	if h.HTTPGet != nil {
		validateHTTPGet(f, c, h.HTTPGet, p.Child("httpGet"))
	}
	if s := h.Sleep; s != nil && (s.Seconds < 0 || s.Seconds > grace) {
		f.fail(p.Child("sleep", "seconds"), "must be between 0 and terminationGracePeriodSeconds (%d), not %d", grace, s.Seconds)
	}
}

func validateOneHandler(f *findings, p *field.Path, set ...bool) {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	switch {
	case n == 0:
		f.fail(p, "must specify a handler type")
	case n > 1:
		f.fail(p, "may not specify more than 1 handler type")
	}
}

func validateCommand(f *findings, cmd []string, p *field.Path) {
	if len(cmd) == 0 {
		f.fail(p, "required")
	}
}

func validateHTTPGet(f *findings, c *corev1.Container, h *corev1.HTTPGetAction, p *field.Path) {
	validateHandlerPort(f, c, h.Port, p.Child("port"))
	if h.Scheme != "" && !handlerSchemes.Has(h.Scheme) {
		f.fail(p.Child("scheme"), "must be HTTP or HTTPS, not %q", h.Scheme)
	}
	for i, hdr := range h.HTTPHeaders {
		f.check(p.Child("httpHeaders").Index(i).Child("name"), validation.IsHTTPHeaderName(hdr.Name))
	}
}

// validateHandlerPort checks a port given by number, or by the name of one
// of the container's ports.
func validateHandlerPort(f *findings, c *corev1.Container, port intstr.IntOrString, p *field.Path) {
	if port.Type == intstr.Int {
		f.check(p, validation.IsValidPortNum(port.IntValue()))
		return
	}
	if msgs := validation.IsValidPortName(port.StrVal); len(msgs) > 0 {
		f.check(p, msgs)
		return
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return
		}
	}
	f.fail(p, "unknown named port %q: container %s has no port of that name", port.StrVal, c.Name)
}
