package manifests

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// use says what peapod does with a field of the Pod API.
type use int

const (
	// honoured fields are implemented; validate checks their values.
	honoured use = iota
	// ignored fields are accepted with a warning: dropping them only loses
	// a convenience (scheduling hints, probes until they land).
	ignored
	// rejected fields make the document invalid: dropping them would be
	// unsafe or change what runs.
	rejected
)

// rule is peapod's decision for one field.
type rule struct {
	use    use
	reason string
	// allow, when not nil, is the one value of an ignored or rejected field
	// that asks for what peapod does anyway (privileged: false), accepted
	// silently.
	allow any
	// quantity marks a honoured resource.Quantity, checked by the walk so
	// that a malformed one is reported with its path.
	quantity bool
}

// fieldRules is every decision about the fields of a Pod, keyed by path:
// "[]" stands for any list index, "[name]" for a map key, and ".*" and
// "[*]" for any field or key not listed at that level. A field missing from the table is
// rejected, so a field that a newer k8s.io/api adds is never accepted
// silently. To support a field, move it to honoured and teach validate its
// values. withLifecycle adds the probes and hooks, and the init containers.
var fieldRules = withLifecycle(map[string]rule{
	"apiVersion": {use: honoured},
	"kind":       {use: honoured},
	"status":     {use: ignored, reason: "status is reported by the agent, not read from the manifest"},

	"metadata":                            {use: honoured},
	"metadata.name":                       {use: honoured},
	"metadata.namespace":                  {use: honoured},
	"metadata.labels":                     {use: honoured},
	"metadata.annotations":                {use: honoured},
	"metadata.uid":                        {use: ignored, reason: "peapod sets the UID to a hash of the manifest"},
	"metadata.generateName":               {use: ignored, reason: "a static pod is named by metadata.name"},
	"metadata.resourceVersion":            {use: ignored, reason: "there is no API server"},
	"metadata.generation":                 {use: ignored, reason: "there is no API server"},
	"metadata.creationTimestamp":          {use: ignored, reason: "there is no API server"},
	"metadata.selfLink":                   {use: ignored, reason: "there is no API server"},
	"metadata.managedFields":              {use: ignored, reason: "there is no API server"},
	"metadata.ownerReferences":            {use: ignored, reason: "there is no garbage collector"},
	"metadata.finalizers":                 {use: ignored, reason: "there is no API server"},
	"metadata.deletionTimestamp":          {use: ignored, reason: "delete the manifest file to delete the pod"},
	"metadata.deletionGracePeriodSeconds": {use: ignored, reason: "delete the manifest file to delete the pod"},

	"spec":                               {use: honoured},
	"spec.restartPolicy":                 {use: honoured},
	"spec.terminationGracePeriodSeconds": {use: honoured},
	"spec.hostname":                      {use: honoured},
	"spec.hostNetwork":                   {use: honoured},
	"spec.hostUsers":                     {use: honoured},
	"spec.dnsPolicy":                     {use: honoured},
	"spec.dnsConfig":                     {use: honoured},
	"spec.os":                            {use: honoured},
	"spec.os.name":                       {use: honoured},
	"spec.subdomain":                     {use: ignored, reason: "there is no cluster DNS to publish the pod's FQDN"},
	"spec.nodeName":                      {use: ignored, reason: "peapod runs pods on its own host only"},
	"spec.nodeSelector":                  {use: ignored, reason: "peapod runs pods on its own host only"},
	"spec.affinity":                      {use: ignored, reason: "peapod runs pods on its own host only"},
	"spec.tolerations":                   {use: ignored, reason: "peapod runs pods on its own host only"},
	"spec.topologySpreadConstraints":     {use: ignored, reason: "peapod runs pods on its own host only"},
	"spec.schedulerName":                 {use: ignored, reason: "there is no scheduler"},
	"spec.schedulingGates":               {use: ignored, reason: "there is no scheduler"},
	"spec.priority":                      {use: ignored, reason: "there is no scheduler or eviction"},
	"spec.priorityClassName":             {use: ignored, reason: "there is no scheduler or eviction"},
	"spec.preemptionPolicy":              {use: ignored, reason: "there is no scheduler or eviction"},
	"spec.overhead":                      {use: ignored, reason: "there is no scheduler"},
	"spec.readinessGates":                {use: ignored, reason: "there are no controllers to set the conditions"},
	"spec.serviceAccountName":            {use: ignored, reason: "there is no API server to issue a token"},
	"spec.serviceAccount":                {use: ignored, reason: "there is no API server to issue a token"},
	"spec.automountServiceAccountToken":  {use: ignored, reason: "there is no API server to issue a token", allow: false},
	"spec.enableServiceLinks":            {use: ignored, reason: "there are no services", allow: false},
	"spec.imagePullSecrets":              {use: ignored, reason: "pull secrets are not supported yet: registry credentials come from --registry-auth-file"},
	"spec.hostPID":                       {use: rejected, reason: "containers always get their own PID namespace", allow: false},
	"spec.hostIPC":                       {use: rejected, reason: "pods always get their own IPC namespace", allow: false},
	"spec.shareProcessNamespace":         {use: rejected, reason: "containers always get their own PID namespace", allow: false},
	"spec.ephemeralContainers":           {use: rejected, reason: "there is no API to add ephemeral containers"},
	"spec.activeDeadlineSeconds":         {use: rejected, reason: "the pod would run past its deadline"},
	"spec.hostAliases":                   {use: rejected, reason: "not supported yet: /etc/hosts would miss the entries"},
	"spec.setHostnameAsFQDN":             {use: rejected, reason: "there is no cluster DNS to form the FQDN", allow: false},
	"spec.runtimeClassName":              {use: rejected, reason: "peapod has one runtime; the pod would run with other isolation than asked"},
	"spec.resourceClaims":                {use: rejected, reason: "there is no dynamic resource allocation"},
	"spec.resources":                     {use: rejected, reason: "pod-level resources are not supported yet; set them per container"},
	"spec.hostnameOverride":              {use: rejected, reason: "not supported yet; use spec.hostname"},

	"spec.securityContext":                          {use: honoured},
	"spec.securityContext.runAsUser":                {use: honoured},
	"spec.securityContext.runAsGroup":               {use: honoured},
	"spec.securityContext.runAsNonRoot":             {use: honoured},
	"spec.securityContext.seccompProfile":           {use: honoured},
	"spec.securityContext.seccompProfile.type":      {use: honoured},
	"spec.securityContext.appArmorProfile":          {use: honoured},
	"spec.securityContext.appArmorProfile.type":     {use: honoured},
	"spec.securityContext.windowsOptions":           {use: ignored, reason: "peapod runs Linux pods"},
	"spec.securityContext.seLinuxOptions":           {use: rejected, reason: "SELinux labels are not applied"},
	"spec.securityContext.seLinuxChangePolicy":      {use: rejected, reason: "SELinux labels are not applied"},
	"spec.securityContext.supplementalGroups":       {use: honoured},
	"spec.securityContext.supplementalGroupsPolicy": {use: rejected, reason: "not supported yet"},
	"spec.securityContext.fsGroup":                  {use: rejected, reason: "not supported yet: volume ownership would not change"},
	"spec.securityContext.fsGroupChangePolicy":      {use: rejected, reason: "not supported yet: volume ownership would not change"},
	"spec.securityContext.sysctls":                  {use: honoured},
	"spec.securityContext.sysctls[].name":           {use: honoured},
	"spec.securityContext.sysctls[].value":          {use: honoured},
	// validate checks the profile types; see the README's Security section.
	"spec.securityContext.seccompProfile.localhostProfile":  {use: honoured},
	"spec.securityContext.appArmorProfile.localhostProfile": {use: honoured},

	"spec.volumes":                      {use: honoured},
	"spec.volumes[].name":               {use: honoured},
	"spec.volumes[].emptyDir":           {use: honoured},
	"spec.volumes[].emptyDir.medium":    {use: honoured},
	"spec.volumes[].emptyDir.sizeLimit": {use: honoured, quantity: true},
	"spec.volumes[].hostPath":           {use: honoured},
	"spec.volumes[].hostPath.path":      {use: honoured},
	"spec.volumes[].hostPath.type":      {use: honoured},
	"spec.volumes[].*":                  {use: rejected, reason: "peapod has emptyDir and hostPath volumes only"},

	"spec.containers":                      {use: honoured},
	"spec.containers[].name":               {use: honoured},
	"spec.containers[].image":              {use: honoured},
	"spec.containers[].command":            {use: honoured},
	"spec.containers[].args":               {use: honoured},
	"spec.containers[].workingDir":         {use: honoured},
	"spec.containers[].imagePullPolicy":    {use: honoured},
	"spec.containers[].resizePolicy":       {use: ignored, reason: "edit the manifest to resize; the pod restarts"},
	"spec.containers[].stdin":              {use: ignored, reason: "there is no attach; stdin is /dev/null", allow: false},
	"spec.containers[].stdinOnce":          {use: ignored, reason: "there is no attach; stdin is /dev/null", allow: false},
	"spec.containers[].tty":                {use: ignored, reason: "there is no attach; output goes to the log", allow: false},
	"spec.containers[].envFrom":            {use: rejected, reason: "there are no ConfigMaps or Secrets"},
	"spec.containers[].restartPolicy":      {use: rejected, reason: "only init containers take a restartPolicy: Always makes a sidecar"},
	"spec.containers[].restartPolicyRules": {use: rejected, reason: "per-container restart rules are not supported yet"},
	"spec.containers[].volumeDevices":      {use: rejected, reason: "there are no block volumes"},

	"spec.containers[].env":                                 {use: honoured},
	"spec.containers[].env[].name":                          {use: honoured},
	"spec.containers[].env[].value":                         {use: honoured},
	"spec.containers[].env[].valueFrom":                     {use: honoured},
	"spec.containers[].env[].valueFrom.fieldRef":            {use: honoured},
	"spec.containers[].env[].valueFrom.fieldRef.fieldPath":  {use: honoured},
	"spec.containers[].env[].valueFrom.fieldRef.apiVersion": {use: honoured},
	"spec.containers[].env[].valueFrom.resourceFieldRef":    {use: rejected, reason: "not supported yet"},
	"spec.containers[].env[].valueFrom.configMapKeyRef":     {use: rejected, reason: "there are no ConfigMaps"},
	"spec.containers[].env[].valueFrom.secretKeyRef":        {use: rejected, reason: "there are no Secrets"},
	"spec.containers[].env[].valueFrom.fileKeyRef":          {use: rejected, reason: "not supported yet"},

	"spec.containers[].ports":                 {use: honoured},
	"spec.containers[].ports[].name":          {use: honoured},
	"spec.containers[].ports[].containerPort": {use: honoured},
	"spec.containers[].ports[].hostPort":      {use: honoured},
	"spec.containers[].ports[].hostIP":        {use: honoured},
	"spec.containers[].ports[].protocol":      {use: honoured},

	// A memory request only guides scheduling and eviction, which a single
	// host without either honours by doing nothing; the CPU request sets
	// the cgroup CPU weight, as in kubelet. An ephemeral-storage limit
	// evicts the pod when its writable layers, logs and disk emptyDirs
	// exceed it (reconcile/disk.go); its request, like the memory one,
	// only ranks pods under node pressure, and must not exceed the limit.
	"spec.containers[].resources":                             {use: honoured},
	"spec.containers[].resources.limits":                      {use: honoured},
	"spec.containers[].resources.limits[cpu]":                 {use: honoured, quantity: true},
	"spec.containers[].resources.limits[memory]":              {use: honoured, quantity: true},
	"spec.containers[].resources.limits[ephemeral-storage]":   {use: honoured, quantity: true},
	"spec.containers[].resources.limits[*]":                   {use: rejected, reason: "peapod enforces cpu, memory and ephemeral-storage limits only"},
	"spec.containers[].resources.requests":                    {use: honoured},
	"spec.containers[].resources.requests[cpu]":               {use: honoured, quantity: true},
	"spec.containers[].resources.requests[memory]":            {use: honoured, quantity: true},
	"spec.containers[].resources.requests[ephemeral-storage]": {use: honoured, quantity: true},
	"spec.containers[].resources.requests[*]":                 {use: rejected, reason: "extended resources need a device plugin"},
	"spec.containers[].resources.claims":                      {use: rejected, reason: "there is no dynamic resource allocation"},

	"spec.containers[].volumeMounts":                     {use: honoured},
	"spec.containers[].volumeMounts[].name":              {use: honoured},
	"spec.containers[].volumeMounts[].mountPath":         {use: honoured},
	"spec.containers[].volumeMounts[].readOnly":          {use: honoured},
	"spec.containers[].volumeMounts[].subPath":           {use: honoured},
	"spec.containers[].volumeMounts[].mountPropagation":  {use: rejected, reason: "mounts are always private", allow: "None"},
	"spec.containers[].volumeMounts[].recursiveReadOnly": {use: rejected, reason: "not supported yet", allow: "Disabled"},
	"spec.containers[].volumeMounts[].subPathExpr":       {use: rejected, reason: "not supported yet; use subPath"},

	"spec.containers[].securityContext":              {use: honoured},
	"spec.containers[].securityContext.runAsUser":    {use: honoured},
	"spec.containers[].securityContext.runAsGroup":   {use: honoured},
	"spec.containers[].securityContext.runAsNonRoot": {use: honoured},
	"spec.containers[].securityContext.privileged":   {use: rejected, reason: "containers are never privileged", allow: false},
	// false sets no_new_privs; true and unset leave it clear, as in kubelet.
	"spec.containers[].securityContext.allowPrivilegeEscalation":         {use: honoured},
	"spec.containers[].securityContext.readOnlyRootFilesystem":           {use: honoured},
	"spec.containers[].securityContext.procMount":                        {use: rejected, reason: "/proc is always masked", allow: "Default"},
	"spec.containers[].securityContext.capabilities":                     {use: honoured},
	"spec.containers[].securityContext.capabilities.add":                 {use: honoured},
	"spec.containers[].securityContext.capabilities.drop":                {use: honoured},
	"spec.containers[].securityContext.seccompProfile":                   {use: honoured},
	"spec.containers[].securityContext.seccompProfile.type":              {use: honoured},
	"spec.containers[].securityContext.appArmorProfile":                  {use: honoured},
	"spec.containers[].securityContext.appArmorProfile.type":             {use: honoured},
	"spec.containers[].securityContext.seLinuxOptions":                   {use: rejected, reason: "SELinux labels are not applied"},
	"spec.containers[].securityContext.windowsOptions":                   {use: ignored, reason: "peapod runs Linux pods"},
	"spec.containers[].securityContext.seccompProfile.localhostProfile":  {use: honoured},
	"spec.containers[].securityContext.appArmorProfile.localhostProfile": {use: honoured},
})

// notListed is the decision for a field the table does not name.
var notListed = rule{use: rejected, reason: "peapod does not implement this field"}

// keyedMaps holds the table paths whose keys are names (resources.limits),
// shown as [name] like kubectl, rather than fields.
var keyedMaps = keyedMapsOf(fieldRules)

func keyedMapsOf(rules map[string]rule) map[string]bool {
	keyed := make(map[string]bool)
	for p := range rules {
		if strings.HasSuffix(p, "]") && !strings.HasSuffix(p, "[]") {
			keyed[p[:strings.LastIndex(p, "[")]] = true
		}
	}
	return keyed
}

// fieldParents holds the table paths that have fields listed below them.
var fieldParents = parentsOf(fieldRules)

func parentsOf(rules map[string]rule) map[string]bool {
	parents := make(map[string]bool)
	for p := range rules {
		if i := strings.LastIndex(p, "."); i > 0 {
			parents[p[:i]] = true
		}
	}
	return parents
}

// checkFields walks the document as the user wrote it (its JSON form) and
// applies fieldRules to every field that is set. Unset fields (null, empty
// lists and objects) ask for nothing and are skipped, and so are the fields
// in unknown, which the strict decoder has already reported.
func checkFields(f *findings, doc map[string]any, unknown map[string]bool) {
	w := walker{f: f, unknown: unknown}
	w.object(nil, "", doc)
}

type walker struct {
	f       *findings
	unknown map[string]bool
}

// object walks the fields of obj, found at path; pattern is its table path.
func (w walker) object(path *field.Path, pattern string, obj map[string]any) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.value(childOf(path, pattern, k), obj[k])
	}
}

// node is one place in the document: where it is, and the table entries
// that may describe it.
type node struct {
	path     *field.Path
	pattern  string
	wildcard string
}

// childOf returns the node of key k in the object at path.
func childOf(path *field.Path, pattern, k string) node {
	switch {
	case keyedMaps[pattern]:
		return node{path.Key(k), pattern + "[" + k + "]", pattern + "[*]"}
	case path == nil:
		return node{field.NewPath(k), k, ""}
	default:
		return node{path.Child(k), pattern + "." + k, pattern + ".*"}
	}
}

func (w walker) value(n node, v any) {
	if isUnset(v) || w.unknown[n.path.String()] {
		return
	}
	r := n.rule()
	switch {
	case r.use == honoured:
		w.descend(n, r, v)
	case r.allow != nil && isScalar(v) && v == r.allow:
	case r.use == ignored:
		w.f.warn(n.path, r.reason)
	default:
		w.f.fail(n.path, "not supported: %s", r.reason)
	}
}

// descend walks into a honoured value. An object or list whose fields the
// table does not list (labels, command) is a leaf that validate checks.
func (w walker) descend(n node, r rule, v any) {
	switch v := v.(type) {
	case map[string]any:
		if fieldParents[n.pattern] || keyedMaps[n.pattern] {
			w.object(n.path, n.pattern, v)
		}
	case []any:
		elem := n.pattern + "[]"
		if !fieldParents[elem] {
			return
		}
		for i, e := range v {
			// An element that is not an object fails the typed decode.
			if obj, ok := e.(map[string]any); ok {
				w.object(n.path.Index(i), elem, obj)
			}
		}
	default:
		if r.quantity {
			checkQuantity(w.f, n.path, v)
		}
	}
}

// rule returns the node's table entry, else its level's wildcard entry,
// else notListed.
func (n node) rule() rule {
	if r, ok := fieldRules[n.pattern]; ok {
		return r
	}
	if r, ok := fieldRules[n.wildcard]; ok {
		return r
	}
	return notListed
}

func isUnset(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(v) == 0
	case []any:
		return len(v) == 0
	}
	return false
}

func isScalar(v any) bool {
	switch v.(type) {
	case bool, string:
		return true
	}
	return false
}

func checkQuantity(f *findings, path *field.Path, v any) {
	s := fmt.Sprint(v)
	if _, err := resource.ParseQuantity(s); err != nil {
		f.fail(path, "invalid quantity %q: %v", s, err)
	}
}
