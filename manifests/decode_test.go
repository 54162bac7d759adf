package manifests

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// manifest returns a valid pod with extra lines added at the end of its
// spec (indented two spaces) and of its only container (indented four).
func manifest(spec, container string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n" + spec +
		"  containers:\n  - name: app\n    image: rootfs:/images/busybox\n" + container
}

func decodeOne(t *testing.T, data string) *Pod {
	t.Helper()
	pods, err := Decode("/m/web.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(pods) != 1 {
		t.Fatalf("Decode: got %d pods, want 1", len(pods))
	}
	return pods[0]
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name         string
		data         string
		wantWarnings []string
	}{
		{name: "minimal", data: manifest("", "")},
		{
			name: "explicit values that ask for what peapod does",
			data: manifest("  hostPID: false\n  shareProcessNamespace: false\n  securityContext:\n    seccompProfile: {type: RuntimeDefault}\n",
				"    securityContext:\n      privileged: false\n      allowPrivilegeEscalation: false\n      readOnlyRootFilesystem: false\n"+
					"      procMount: Default\n      appArmorProfile: {type: Unconfined}\n"+
					"    volumeMounts:\n    - {name: v, mountPath: /v, mountPropagation: None, subPath: a/b}\n"+
					"  volumes:\n  - name: v\n    hostPath: {path: /srv/v, type: DirectoryOrCreate}\n"),
		},
		{
			name: "trailing slashes",
			data: manifest("  volumes: [{name: logs, hostPath: {path: /var/log/}}]\n", "    workingDir: /srv/\n    volumeMounts: [{name: logs, mountPath: /logs/}]\n"),
		},
		{
			name: "host IDs with hostUsers: true",
			data: manifest("  hostUsers: true\n  securityContext: {runAsUser: 100000, runAsGroup: 4294967294}\n", ""),
		},
		{
			name: "images of every transport, pull policies",
			data: manifest("", "    imagePullPolicy: Never\n"+
				"  - {name: b, image: busybox, imagePullPolicy: Always}\n"+
				"  - {name: c, image: 'ghcr.io/org/app@sha256:"+strings.Repeat("a", 64)+"', imagePullPolicy: IfNotPresent}\n"+
				"  - {name: d, image: '127.0.0.1:5000/team/svc:v3'}\n"+
				"  - {name: e, image: 'docker-archive:/srv/app.tar'}\n"+
				"  - {name: f, image: 'oci:/srv/layout:v1'}\n"),
		},
		{
			name: "supplemental groups",
			data: manifest("  securityContext: {supplementalGroups: [44, 1000]}\n", ""),
		},
		{
			name: "local storage limits",
			data: manifest("  volumes: [{name: d, emptyDir: {sizeLimit: 10Mi}}]\n",
				"    resources: {limits: {ephemeral-storage: 1Gi}, requests: {ephemeral-storage: 500Mi}}\n"),
		},
		{
			name: "runAsNonRoot with a pod-level runAsUser",
			data: manifest("  securityContext: {runAsUser: 1000, runAsNonRoot: true}\n", ""),
		},
		{
			name: "distinct host IPs share a host port",
			data: manifest("", "    ports:\n    - {containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}\n"+
				"    - {containerPort: 81, hostPort: 8080, hostIP: 127.0.0.2}\n    - {containerPort: 80, hostPort: 8080, protocol: UDP}\n"),
		},
		{
			name: "seccomp profiles",
			data: manifest("  securityContext:\n    seccompProfile: {type: Unconfined}\n",
				"    securityContext:\n      seccompProfile: {type: Localhost, localhostProfile: team/web.json}\n"+
					"  - name: b\n    image: rootfs:/images/busybox\n    securityContext: {seccompProfile: {type: RuntimeDefault}}\n"),
		},
		{
			name: "AppArmor profiles warn",
			data: strings.Replace(manifest("  securityContext:\n    appArmorProfile: {type: RuntimeDefault}\n",
				"    securityContext:\n      appArmorProfile: {type: Localhost, localhostProfile: web}\n"),
				"name: web", "name: web\n  annotations: {container.apparmor.security.beta.kubernetes.io/app: unconfined, container.apparmor.security.beta.kubernetes.io/b: runtime/default}", 1),
			wantWarnings: []string{
				"metadata.annotations[container.apparmor.security.beta.kubernetes.io/b]: ignored: peapod does not apply AppArmor profiles: the container runs without one",
				"spec.securityContext.appArmorProfile.type: ignored: peapod does not apply AppArmor profiles: the container runs without one",
				"spec.containers[0].securityContext.appArmorProfile.type: ignored: peapod does not apply AppArmor profiles: the container will not start (CreateContainerConfigError)",
			},
		},
		{
			name: "ignored fields warn",
			data: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  uid: abc\nspec:\n  nodeName: n1\n  subdomain: www\n" +
				"  containers:\n  - name: app\n    image: rootfs:/images/busybox\n    imagePullPolicy: Always\n" +
				"    livenessProbe: {exec: {command: [\"true\"]}}\nstatus: {phase: Running}\n",
			wantWarnings: []string{
				"metadata.uid: ignored: peapod sets the UID to a hash of the manifest",
				"spec.nodeName: ignored: peapod runs pods on its own host only",
				"spec.subdomain: ignored: there is no cluster DNS to publish the pod's FQDN",
				"status: ignored: status is reported by the agent, not read from the manifest",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := decodeOne(t, tt.data)
			if diff := cmp.Diff(tt.wantWarnings, pod.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeInvalid(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"unknown field", manifest("  contianers: []\n", ""), "document 1: spec.contianers: unknown field"},
		{"unknown nested field", manifest("", "    imagee: x\n"), "spec.containers[0].imagee: unknown field"},
		{"field case", manifest("", "    Command: [sh]\n"), "spec.containers[0].Command: unknown field"},
		{"duplicate key", manifest("", "    name: other\n"), `key "name" already set in map (lines counted from line 1`},
		{"duplicate JSON key", `{"apiVersion": "v1", "kind": "Pod", "kind": "Pod"}`, `key "kind" already set in map`},
		{"other kind", "apiVersion: apps/v1\nkind: Deployment\n", "unsupported kind Deployment (apps/v1): peapod runs kind Pod, apiVersion v1 only"},
		{"other version", "apiVersion: v2\nkind: Pod\n", "unsupported kind Pod (v2)"},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", "kind: missing: peapod runs kind Pod"},
		{"numeric kind", "apiVersion: v1\nkind: 5\n", "unsupported kind 5 (v1)"},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
			"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
			"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n", "excessive aliasing"},
		{"not a mapping", "- a\n- b\n", "document 1: not a mapping: peapod runs kind Pod"},
		{"wrong type", manifest("", "    ports: [{containerPort: x}]\n"), "cannot unmarshal string"},
		{"bad quantity", manifest("", "    resources: {limits: {cpu: 1x}}\n"), `spec.containers[0].resources.limits[cpu]: invalid quantity "1x"`},
		{"no name", "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a, image: 'rootfs:/a'}]}\n", "metadata.name: required"},
		{"bad name", strings.Replace(manifest("", ""), "name: web", "name: Web_1", 1), "metadata.name: a lowercase RFC 1123 subdomain"},
		{"bad namespace", strings.Replace(manifest("", ""), "name: web", "name: web\n  namespace: a.b", 1), "metadata.namespace: must not contain dots"},
		{"bad label", strings.Replace(manifest("", ""), "name: web", "name: web\n  labels: {a: 'b c'}", 1), "metadata.labels: Invalid value"},
		{"reserved annotation", strings.Replace(manifest("", ""), "name: web", "name: web\n  annotations: {peapod.io/manifest: x}", 1), "metadata.annotations[peapod.io/manifest]: reserved"},
		{"no containers", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {}\n", "spec.containers: at least one container is required"},
		{"duplicate container", manifest("", "  - name: app\n    image: rootfs:/a\n"), `spec.containers[1].name: duplicate name "app"`},
		{"bad container name", manifest("", "  - name: App\n    image: rootfs:/a\n"), "spec.containers[1].name: a lowercase RFC 1123 label"},
		{"no image", manifest("", "  - name: b\n"), "spec.containers[1].image: required"},
		{"bad reference", manifest("", "  - name: b\n    image: Busybox:1.36\n"), `spec.containers[1].image: invalid image reference "Busybox:1.36"`},
		{"unknown transport", manifest("", "  - name: b\n    image: containers-storage:/x\n"),
			`spec.containers[1].image: image "containers-storage:/x": unknown transport "containers-storage"; use a registry reference (busybox, ghcr.io/org/app:v1, host:port/repo@sha256:...) or docker-archive:, oci-archive:, oci:, rootfs:`},
		{"relative rootfs", manifest("", "  - name: b\n    image: rootfs:images/b\n"), `spec.containers[1].image: image rootfs:images/b: the path must be absolute and clean`},
		{"unclean rootfs", manifest("", "  - name: b\n    image: rootfs:/a/../b\n"), `spec.containers[1].image: image rootfs:/a/../b: the path must be absolute and clean`},
		{"relative archive", manifest("", "  - name: b\n    image: oci-archive:b.tar\n"), `spec.containers[1].image: image oci-archive:b.tar: the path must be absolute and clean`},
		{"bad pull policy", manifest("", "    imagePullPolicy: Sometimes\n"), `spec.containers[0].imagePullPolicy: unsupported value "Sometimes": Always, IfNotPresent or Never`},
		{"host root", manifest("", "  - name: b\n    image: 'rootfs:/'\n"), "the host's root directory cannot be an image"},
		{"relative workingDir", manifest("", "    workingDir: tmp\n"), "spec.containers[0].workingDir: must be an absolute path"},
		{"undeclared volume", manifest("", "    volumeMounts: [{name: v, mountPath: /v}]\n"), `spec.containers[0].volumeMounts[0].name: no volume named "v"`},
		{"relative mountPath", manifest("  volumes: [{name: v, emptyDir: {}}]\n", "    volumeMounts: [{name: v, mountPath: v}]\n"), "volumeMounts[0].mountPath: must be an absolute path"},
		{"duplicate mountPath", manifest("  volumes: [{name: v, emptyDir: {}}]\n", "    volumeMounts: [{name: v, mountPath: /v}, {name: v, mountPath: /v/}]\n"), `volumeMounts[1].mountPath: duplicate mount path "/v/"`},
		{"absolute subPath", manifest("  volumes: [{name: v, emptyDir: {}}]\n", "    volumeMounts: [{name: v, mountPath: /v, subPath: /etc}]\n"), "volumeMounts[0].subPath: must be a relative path"},
		{"escaping subPath", manifest("  volumes: [{name: v, emptyDir: {}}]\n", "    volumeMounts: [{name: v, mountPath: /v, subPath: a/../../b}]\n"), "volumeMounts[0].subPath: must not contain '..'"},
		{"port zero", manifest("", "    ports: [{containerPort: 0}]\n"), "spec.containers[0].ports[0].containerPort: must be between 1 and 65535"},
		{"port too big", manifest("", "    ports: [{containerPort: 65536}]\n"), "ports[0].containerPort: must be between 1 and 65535"},
		{"hostPort too big", manifest("", "    ports: [{containerPort: 80, hostPort: 70000}]\n"), "ports[0].hostPort: must be between 1 and 65535"},
		{"SCTP", manifest("", "    ports: [{containerPort: 80, protocol: SCTP}]\n"), `ports[0].protocol: must be TCP or UDP, not "SCTP"`},
		{"bad hostIP", manifest("", "    ports: [{containerPort: 80, hostPort: 80, hostIP: 300.1.1.1}]\n"), "ports[0].hostIP: Invalid value"},
		{"duplicate port name", manifest("", "    ports: [{name: http, containerPort: 80}, {name: http, containerPort: 81}]\n"), `ports[1].name: duplicate port name "http"`},
		{"host port twice", manifest("", "    ports: [{containerPort: 80, hostPort: 80}]\n  - name: b\n    image: rootfs:/b\n    ports: [{containerPort: 81, hostPort: 80, hostIP: 10.0.0.1}]\n"),
			"spec.containers[1].ports[0].hostPort: host port 80/TCP is already used in this pod"},
		{"hostNetwork port mismatch", manifest("  hostNetwork: true\n", "    ports: [{containerPort: 80, hostPort: 8080}]\n"), "ports[0].hostPort: must equal containerPort with hostNetwork: true"},
		{"negative quantity", manifest("", "    resources: {limits: {memory: -1Mi}}\n"), "resources.limits[memory]: must not be negative"},
		{"request over limit", manifest("", "    resources: {limits: {cpu: 500m}, requests: {cpu: 1}}\n"), "resources.requests[cpu]: must not exceed the limit 500m, got 1"},
		{"storage request over limit", manifest("", "    resources: {limits: {ephemeral-storage: 1Gi}, requests: {ephemeral-storage: 2Gi}}\n"),
			"resources.requests[ephemeral-storage]: must not exceed the limit 1Gi, got 2Gi"},
		{"bad storage quantity", manifest("", "    resources: {limits: {ephemeral-storage: 1GB2}}\n"), `resources.limits[ephemeral-storage]: invalid quantity "1GB2"`},
		{"env name", manifest("", "    env: [{name: 'A=B', value: x}]\n"), "spec.containers[0].env[0].name:"},
		{"env fieldRef", manifest("", "    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]\n"),
			`env[0].valueFrom.fieldRef.fieldPath: unsupported field "spec.nodeName": peapod provides metadata.name, metadata.namespace, metadata.uid, status.podIP, status.podIPs`},
		{"env fieldRef version", manifest("", "    env: [{name: POD, valueFrom: {fieldRef: {apiVersion: v2, fieldPath: metadata.name}}}]\n"), `fieldRef.apiVersion: must be v1, not "v2"`},
		{"env value and valueFrom", manifest("", "    env: [{name: POD, value: x, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n"), "env[0]: set one of value and valueFrom, not both"},
		{"env secret", manifest("", "    env: [{name: POD, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n"), "env[0].valueFrom.secretKeyRef: not supported: there are no Secrets"},
		{"env empty valueFrom", manifest("", "    env: [{name: POD, valueFrom: {}}]\n"), "env[0].valueFrom.fieldRef: required"},
		{"runAsUser over userns", manifest("", "    securityContext: {runAsUser: 65536}\n"), "securityContext.runAsUser: must be within 0..65535, not 65536"},
		{"negative runAsGroup", manifest("  securityContext: {runAsGroup: -1}\n", ""), "spec.securityContext.runAsGroup: must be within 0..65535, not -1"},
		{"runAsUser over host", manifest("  hostUsers: true\n", "    securityContext: {runAsUser: 4294967295}\n"), "runAsUser: must be within 0..4294967294"},
		{"runAsNonRoot container UID 0", manifest("  securityContext: {runAsNonRoot: true, runAsUser: 1000}\n", "    securityContext: {runAsUser: 0}\n"), "the container would run as root"},
		{"configMap volume", manifest("  volumes: [{name: v, configMap: {name: c}}]\n", ""), "spec.volumes[0].configMap: not supported: peapod has emptyDir and hostPath volumes only"},
		{"empty configMap volume", manifest("  volumes: [{name: v, configMap: {}}]\n", ""), "spec.volumes[0]: peapod has emptyDir and hostPath volumes only"},
		{"two sources", manifest("  volumes: [{name: v, emptyDir: {}, hostPath: {path: /a}}]\n", ""), "spec.volumes[0]: set one of emptyDir and hostPath, not both"},
		{"duplicate volume", manifest("  volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]\n", ""), `spec.volumes[1].name: duplicate name "v"`},
		{"hugepages", manifest("  volumes: [{name: v, emptyDir: {medium: HugePages}}]\n", ""), `emptyDir.medium: must be "" (disk) or Memory, not "HugePages"`},
		{"hostPath backstep", manifest("  volumes: [{name: v, hostPath: {path: /srv/../etc}}]\n", ""), "spec.volumes[0].hostPath.path: must not contain '..'"},
		{"relative hostPath", manifest("  volumes: [{name: v, hostPath: {path: srv}}]\n", ""), "spec.volumes[0].hostPath.path: must be an absolute path"},
		{"hostPath type", manifest("  volumes: [{name: v, hostPath: {path: /srv, type: Folder}}]\n", ""), `hostPath.type: unknown hostPath type "Folder"`},
		{"hostPID", manifest("  hostPID: true\n", ""), "spec.hostPID: not supported: containers always get their own PID namespace"},
		{"init container restartPolicy", manifest("  initContainers: [{name: i, image: 'rootfs:/a', restartPolicy: OnFailure}]\n", ""), "spec.initContainers[0].restartPolicy: must be Always"},
		{"privileged", manifest("", "    securityContext: {privileged: true}\n"), "securityContext.privileged: not supported: containers are never privileged"},
		{"unmasked", manifest("", "    securityContext: {procMount: Unmasked}\n"), "securityContext.procMount: not supported: /proc is always masked"},
		{"seccomp type", manifest("  securityContext: {seccompProfile: {type: Permissive}}\n", ""), `spec.securityContext.seccompProfile.type: must be RuntimeDefault, Unconfined or Localhost, not "Permissive"`},
		{"seccomp no localhostProfile", manifest("", "    securityContext: {seccompProfile: {type: Localhost}}\n"), "spec.containers[0].securityContext.seccompProfile.localhostProfile: required with type: Localhost"},
		{"seccomp absolute profile", manifest("", "    securityContext: {seccompProfile: {type: Localhost, localhostProfile: /etc/p.json}}\n"), `seccompProfile.localhostProfile: must be a path relative to the agent's seccomp profile directory, not "/etc/p.json"`},
		{"seccomp profile backstep", manifest("  securityContext: {seccompProfile: {type: Localhost, localhostProfile: a/../../p.json}}\n", ""), "spec.securityContext.seccompProfile.localhostProfile: must not contain '..'"},
		{"seccomp stray localhostProfile", manifest("", "    securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: p.json}}\n"), "seccompProfile.localhostProfile: must be set only with type: Localhost"},
		{"AppArmor type", manifest("", "    securityContext: {appArmorProfile: {type: Complain}}\n"), `appArmorProfile.type: must be RuntimeDefault, Unconfined or Localhost, not "Complain"`},
		{"AppArmor annotation", strings.Replace(manifest("", ""), "name: web", "name: web\n  annotations: {container.apparmor.security.beta.kubernetes.io/app: enforce}", 1),
			`metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]: must be runtime/default, unconfined or localhost/<profile>, not "enforce"`},
		{"probe without a handler", manifest("", "    readinessProbe: {periodSeconds: 1}\n"), "spec.containers[0].readinessProbe: must specify a handler type"},
		{"envFrom", manifest("", "    envFrom: [{configMapRef: {name: c}}]\n"), "spec.containers[0].envFrom: not supported"},
		{"claims", manifest("", "    resources: {claims: [{name: gpu}]}\n"), "resources.claims: not supported"},
		{"extended resource", manifest("", "    resources: {limits: {nvidia.com/gpu: 1}}\n"), "resources.limits[nvidia.com/gpu]: not supported: peapod enforces cpu, memory and ephemeral-storage limits only"},
		{"restartPolicy", manifest("  restartPolicy: Sometimes\n", ""), `spec.restartPolicy: must be Always, OnFailure or Never, not "Sometimes"`},
		{"grace", manifest("  terminationGracePeriodSeconds: -1\n", ""), "spec.terminationGracePeriodSeconds: must not be negative"},
		{"hostname", manifest("  hostname: a.b\n", ""), "spec.hostname: must not contain dots"},
		{"dns None", manifest("  dnsPolicy: None\n", ""), "spec.dnsConfig: required with dnsPolicy: None"},
		{"nameserver", manifest("  dnsConfig: {nameservers: [dns.example]}\n", ""), "spec.dnsConfig.nameservers[0]: Invalid value"},
		{"windows", manifest("  os: {name: windows}\n", ""), `spec.os.name: peapod runs linux pods, not "windows"`},
		{"hostUsers false on host network", manifest("  hostNetwork: true\n  hostUsers: false\n", ""), "spec.hostUsers: must be true or unset with hostNetwork: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, err := Decode("/m/web.yaml", []byte(tt.data))
			if err == nil {
				t.Fatalf("Decode succeeded, want an error containing %q", tt.want)
			}
			if pods != nil {
				t.Errorf("Decode returned %d pods with an error", len(pods))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestErrorFormat checks the message users read, and that each problem is
// an *Error naming its file, document and field.
func TestErrorFormat(t *testing.T) {
	data := manifest("", "") + "---\n" + manifest("  contianers: []\n", "    imagee: x\n")
	_, err := Decode("/etc/peapod/manifests/web.yaml", []byte(data))
	want := "/etc/peapod/manifests/web.yaml: document 2: spec.containers[0].imagee: unknown field\n" +
		"/etc/peapod/manifests/web.yaml: document 2: spec.contianers: unknown field"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	var got []Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var de *Error
		if !errors.As(e, &de) {
			t.Fatalf("%v is a %T, want *Error", e, e)
		}
		got = append(got, *de)
	}
	wantErrs := []Error{
		{File: "/etc/peapod/manifests/web.yaml", Doc: 1, Field: "spec.containers[0].imagee", Msg: "unknown field"},
		{File: "/etc/peapod/manifests/web.yaml", Doc: 1, Field: "spec.contianers", Msg: "unknown field"},
	}
	if diff := cmp.Diff(wantErrs, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestDecodeMultiDocument(t *testing.T) {
	data, err := os.ReadFile("testdata/multi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pods, err := Decode("/m/multi.yaml", data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	var got []string
	for _, p := range pods {
		got = append(got, p.Key()+" doc "+string(rune('0'+p.Doc)))
	}
	if diff := cmp.Diff([]string{"default/one doc 0", "default/two doc 1"}, got); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}
}

func TestDecodeAllOrNothing(t *testing.T) {
	tests := []struct {
		name string
		data string
		want string
	}{
		{"second document invalid", manifest("", "") + "---\n" + manifest("", "    imagee: x\n"), "document 2: spec.containers[0].imagee: unknown field"},
		{"same pod twice", manifest("", "") + "---\n# again\n" + manifest("", ""), "document 2: metadata.name: pod default/web is already defined in document 1"},
		{"YAML error in second document", manifest("", "") + "---\nkind: [\n", "document 2: yaml: line 1: did not find expected node content (lines counted from line 10, where the document starts)"},
		{"content after a separator", manifest("", "") + "--- x\n", "document 1: holds more than one YAML document"},
		{"document end marker", manifest("", "") + "...\n" + manifest("", ""), "document 1: holds more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, err := Decode("/m/web.yaml", []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error: %v, want it to contain %q", err, tt.want)
			}
			if pods != nil {
				t.Errorf("got %d pods with an error", len(pods))
			}
		})
	}
}

func TestDecodeNothing(t *testing.T) {
	for _, data := range []string{"", "\n\n", "# just a comment\n", "---\n---\n", "---\n# a\n---\n\n"} {
		pods, err := Decode("/m/empty.yaml", []byte(data))
		if err != nil || len(pods) != 0 {
			t.Errorf("Decode(%q) = %d pods, %v; want none and no error", data, len(pods), err)
		}
	}
}

func TestDecodeGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		data := make([]byte, 1+r.IntN(4096))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if pods, err := Decode("/m/garbage.yaml", data); err == nil && len(pods) > 0 {
			t.Errorf("garbage %d decoded to %d pods", i, len(pods))
		}
	}
}

func TestDecodeTestdata(t *testing.T) {
	tests := []struct {
		file         string
		wantKey      string
		wantWarnings int
	}{
		{"kubectl-run.yaml", "default/web", 0},
		{"web.json", "shop/web", 0},
		{"server-output.yaml", "default/web", 12},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pods, err := DecodeFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatalf("DecodeFile: %v", err)
			}
			if len(pods) != 1 || pods[0].Key() != tt.wantKey {
				t.Fatalf("got %d pods, want one %s", len(pods), tt.wantKey)
			}
			if got := pods[0].Warnings; len(got) != tt.wantWarnings {
				t.Errorf("got %d warnings, want %d:\n%s", len(got), tt.wantWarnings, strings.Join(got, "\n"))
			}
		})
	}
}

// TestExamples keeps the examples shipped to users valid and quiet.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, file := range files {
		pods, err := DecodeFile(file)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(pods) == 0 {
			t.Errorf("%s: no pods", file)
		}
		for _, p := range pods {
			if len(p.Warnings) > 0 {
				t.Errorf("%s: %s: warnings: %q", file, p.Key(), p.Warnings)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	pod := decodeOne(t, manifest("", "    ports: [{containerPort: 80}]\n    env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n"+
		"  volumes: [{name: scratch}]\n")).Pod
	grace := int64(30)
	want := corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		Containers: []corev1.Container{{
			Name:  "app",
			Image: "rootfs:/images/busybox",
			Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"},
			}}},
		}},
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: &grace,
		DNSPolicy:                     corev1.DNSClusterFirst,
	}
	if diff := cmp.Diff(want, pod.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if pod.Namespace != "default" {
		t.Errorf("namespace %q, want default", pod.Namespace)
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestUID(t *testing.T) {
	base := manifest("", "    resources: {limits: {cpu: 500m, memory: 64Mi}}\n")
	uid := decodeOne(t, base).UID()
	if !uuidPattern.MatchString(string(uid)) {
		t.Fatalf("UID %q is not a version 8 UUID", uid)
	}
	same := map[string]string{
		"comments and flow style": "# web\n{apiVersion: v1, kind: Pod, metadata: {name: web}, spec: {containers: [{image: 'rootfs:/images/busybox', name: app,\n  resources: {limits: {memory: 64Mi, cpu: 0.5}}}]}}\n",
		"explicit defaults":       manifest("  restartPolicy: Always\n  dnsPolicy: ClusterFirst\n  terminationGracePeriodSeconds: 30\n", "    resources: {limits: {cpu: 500m, memory: 64Mi}}\n"),
		"JSON":                    `{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": [{"name": "app", "image": "rootfs:/images/busybox", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}}`,
		"uid and status":          strings.Replace(base, "name: web", "name: web\n  uid: abc", 1) + "status: {phase: Running}\n",
	}
	for name, data := range same {
		if got := decodeOne(t, data).UID(); got != uid {
			t.Errorf("%s: UID %s, want %s", name, got, uid)
		}
	}
	different := map[string]string{
		"image":      strings.Replace(base, "rootfs:/images/busybox", "rootfs:/images/other", 1),
		"limit":      strings.Replace(base, "cpu: 500m", "cpu: 600m", 1),
		"namespace":  strings.Replace(base, "name: web", "name: web\n  namespace: other", 1),
		"label":      strings.Replace(base, "name: web", "name: web\n  labels: {a: b}", 1),
		"grace":      manifest("  terminationGracePeriodSeconds: 31\n", "    resources: {limits: {cpu: 500m, memory: 64Mi}}\n"),
		"command":    base + "    command: [sh]\n",
		"annotation": strings.Replace(base, "name: web", "name: web\n  annotations: {a: b}", 1),
	}
	for name, data := range different {
		if got := decodeOne(t, data).UID(); got == uid {
			t.Errorf("%s: UID unchanged by an edit", name)
		}
	}
}

func TestAnnotations(t *testing.T) {
	data := []byte(manifest("", ""))
	a, err := Decode("/m/a.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Decode("/m/b.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if a[0].UID() != b[0].UID() {
		t.Errorf("renaming the file changed the UID: %s, %s", a[0].UID(), b[0].UID())
	}
	want := map[string]string{
		AnnotationSource:   "file",
		AnnotationHash:     string(a[0].UID()),
		AnnotationManifest: "/m/a.yaml",
	}
	if diff := cmp.Diff(want, a[0].Pod.Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if a[0].File != "/m/a.yaml" || a[0].Doc != 0 {
		t.Errorf("File, Doc = %q, %d; want /m/a.yaml, 0", a[0].File, a[0].Doc)
	}
}

func TestDecodeFile(t *testing.T) {
	dir := t.TempDir()
	pod := manifest("", "")
	atLimit := pod + strings.Repeat("#", MaxFileSize-len(pod)-1) + "\n"
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want string // error substring; empty for success
	}{
		{"at the limit", write("limit.yaml", atLimit), ""},
		{"over the limit", write("huge.yaml", atLimit+"\n"), "huge.yaml: file is over the 1 MiB limit"},
		{"directory", dir, "not a regular file"},
		{"fifo", fifo, "fifo.yaml: not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods, err := DecodeFile(tt.path)
			if tt.want == "" {
				if err != nil || len(pods) != 1 {
					t.Errorf("DecodeFile = %d pods, %v; want 1 pod", len(pods), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := DecodeFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestDecodeFileAbsolutePath(t *testing.T) {
	pods, err := DecodeFile("testdata/kubectl-run.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(pods[0].File) || pods[0].Pod.Annotations[AnnotationManifest] != pods[0].File {
		t.Errorf("File %q, annotation %q: want the same absolute path", pods[0].File, pods[0].Pod.Annotations[AnnotationManifest])
	}
}

func BenchmarkDecode(b *testing.B) {
	data, err := os.ReadFile("examples/web.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode("/m/web.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeLargest decodes a pod at the size limit, made of host
// ports, the list that validation cross-checks.
func BenchmarkDecodeLargest(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(manifest("", "    ports:\n"))
	for i := 0; sb.Len() < MaxFileSize-100; i++ {
		fmt.Fprintf(&sb, "    - {containerPort: %d, hostPort: %d, hostIP: 10.%d.%d.1}\n", 1+i%65535, 1+i%65535, i/256%256, i%256)
	}
	data := []byte(sb.String())
	b.ReportAllocs()
	for b.Loop() {
		Decode("/m/big.yaml", data)
	}
}

// TestDecodeReportsEverything checks that one pass reports the unknown and
// unsupported fields of a document and its bad values together.
func TestDecodeReportsEverything(t *testing.T) {
	data := manifest("  hostPID: true\n", "    imagee: x\n    ports:\n    - containerPort: 70000\n    workingDir: relative\n")
	_, err := Decode("/m/web.yaml", []byte(data))
	if err == nil {
		t.Fatal("Decode succeeded")
	}
	for _, want := range []string{
		"spec.containers[0].imagee: unknown field",
		"spec.hostPID: not supported",
		"spec.containers[0].ports[0].containerPort",
		"spec.containers[0].workingDir",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
