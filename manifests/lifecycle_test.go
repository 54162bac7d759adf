package manifests

import (
	"strings"
	"testing"
)

func TestDecodeProbesAndHooks(t *testing.T) {
	valid := manifest("  terminationGracePeriodSeconds: 20\n  initContainers:\n"+
		"  - {name: setup, image: 'rootfs:/a', command: [sh, -c, 'echo hi > /work/x']}\n"+
		"  - name: proxy\n    image: rootfs:/a\n    restartPolicy: Always\n    startupProbe: {tcpSocket: {port: 8080}}\n"+
		"    readinessProbe: {grpc: {port: 9090, service: db}}\n",
		"    ports: [{name: http, containerPort: 80}]\n"+
			"    livenessProbe: {httpGet: {path: /healthz, port: http, scheme: HTTPS, httpHeaders: [{name: X-Probe, value: '1'}]},"+
			" initialDelaySeconds: 5, periodSeconds: 1, timeoutSeconds: 2, failureThreshold: 5, terminationGracePeriodSeconds: 3}\n"+
			"    readinessProbe: {exec: {command: [cat, /ready]}, successThreshold: 2}\n"+
			"    terminationMessagePath: /tmp/why\n    terminationMessagePolicy: FallbackToLogsOnError\n"+
			"    lifecycle:\n      postStart: {exec: {command: [touch, /started]}}\n      preStop: {sleep: {seconds: 5}}\n")
	p := decodeOne(t, valid)
	if len(p.Warnings) != 0 {
		t.Errorf("warnings for honoured fields: %q", p.Warnings)
	}

	for _, tc := range []struct{ name, data, want string }{
		{"two handlers", manifest("", "    livenessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}\n"),
			"spec.containers[0].livenessProbe: may not specify more than 1 handler type"},
		{"no handler", manifest("", "    lifecycle: {preStop: {}}\n"), "spec.containers[0].lifecycle.preStop: must specify a handler type"},
		{"port out of range", manifest("", "    readinessProbe: {httpGet: {port: 70000}}\n"),
			"spec.containers[0].readinessProbe.httpGet.port: must be between 1 and 65535"},
		{"grpc port", manifest("", "    readinessProbe: {grpc: {port: 0}}\n"), "spec.containers[0].readinessProbe.grpc.port: must be between 1 and 65535"},
		{"unknown named port", manifest("", "    ports: [{name: web, containerPort: 80}]\n    startupProbe: {tcpSocket: {port: http}}\n"),
			`spec.containers[0].startupProbe.tcpSocket.port: unknown named port "http"`},
		{"empty command", manifest("", "    livenessProbe: {exec: {command: []}}\n"), "spec.containers[0].livenessProbe.exec.command: required"},
		{"liveness successThreshold", manifest("", "    livenessProbe: {exec: {command: [x]}, successThreshold: 2}\n"),
			"livenessProbe.successThreshold: must be 1 for liveness and startup probes"},
		{"readiness grace", manifest("", "    readinessProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 2}\n"),
			"readinessProbe.terminationGracePeriodSeconds: must not be set for readiness probes"},
		{"negative period", manifest("", "    readinessProbe: {exec: {command: [x]}, periodSeconds: -1}\n"), "readinessProbe.periodSeconds: must not be negative"},
		{"scheme", manifest("", "    readinessProbe: {httpGet: {port: 80, scheme: FTP}}\n"), `readinessProbe.httpGet.scheme: must be HTTP or HTTPS, not "FTP"`},
		{"header name", manifest("", "    readinessProbe: {httpGet: {port: 80, httpHeaders: [{name: 'a b', value: x}]}}\n"), "readinessProbe.httpGet.httpHeaders[0].name"},
		{"tcpSocket hook", manifest("", "    lifecycle: {preStop: {tcpSocket: {port: 80}}}\n"), "spec.containers[0].lifecycle.preStop.tcpSocket: not supported"},
		{"sleep past grace", manifest("  terminationGracePeriodSeconds: 10\n", "    lifecycle: {preStop: {sleep: {seconds: 11}}}\n"),
			"lifecycle.preStop.sleep.seconds: must be between 0 and terminationGracePeriodSeconds (10), not 11"},
		{"probe on an init container", manifest("  initContainers: [{name: i, image: 'rootfs:/a', readinessProbe: {exec: {command: [x]}}}]\n", ""),
			"spec.initContainers[0].readinessProbe: may not be set for init containers without restartPolicy: Always"},
		{"hook on an init container", manifest("  initContainers: [{name: i, image: 'rootfs:/a', lifecycle: {postStart: {exec: {command: [x]}}}}]\n", ""),
			"spec.initContainers[0].lifecycle: may not be set for init containers without restartPolicy: Always"},
		{"init name taken by an app container", manifest("  initContainers: [{name: app, image: 'rootfs:/a'}]\n", ""),
			`spec.initContainers[0].name: duplicate name "app"`},
		{"init container image", manifest("  initContainers: [{name: i}]\n", ""), "spec.initContainers[0].image: required"},
		{"init host port", manifest("  initContainers: [{name: i, image: 'rootfs:/a', ports: [{containerPort: 80, hostPort: 8080}]}]\n", ""),
			"spec.initContainers[0].ports[0].hostPort: not supported"},
		{"relative terminationMessagePath", manifest("", "    terminationMessagePath: tmp/why\n"), "spec.containers[0].terminationMessagePath: must be an absolute path"},
		{"terminationMessagePolicy", manifest("", "    terminationMessagePolicy: Always\n"), `spec.containers[0].terminationMessagePolicy: must be File or FallbackToLogsOnError, not "Always"`},
		{"app container restartPolicy", manifest("", "    restartPolicy: Always\n"), "spec.containers[0].restartPolicy: not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("/m/web.yaml", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode error:\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
