// Package probe runs the network actions of Kubernetes probes and lifecycle
// hooks as kubelet does: an HTTP GET, a TCP connect and a gRPC health check
// against an address a pod serves. They dial from the agent's network
// namespace: a pod's address is reachable from the host through the pod
// bridge, as it is from a kubelet's host, so no thread ever enters a pod's
// namespace.
//
// A target that does not answer fails the probe, with the error as its
// output; an error return means the probe could not be run at all.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Result is the outcome of one probe.
type Result bool

// The outcomes of a probe.
const (
	Success Result = true
	Failure Result = false
)

func (r Result) String() string {
	if r {
		return "success"
	}
	return "failure"
}

// userAgent is what kubelet sends, so that applications that recognise
// probes recognise ours.
const userAgent = "kube-probe/1.37"

// maxBody is how much of a response body becomes the probe's output.
const maxBody = 10 << 10

// maxRedirects is how many redirects to the same host an HTTP probe follows.
const maxRedirects = 10

// dialer connects without leaving the socket in TIME_WAIT: a probe every
// second per pod would otherwise pile up closed connections (kubelet sets
// the same linger).
var dialer = &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 1})
	})
	return errors.Join(err, serr)
}}

// HTTP is an HTTP prober. Its zero value is not usable; use NewHTTP. It is
// safe for concurrent use.
type HTTP struct{ client *http.Client }

// NewHTTP returns an HTTP prober that, as kubelet's, skips certificate
// verification, uses no proxy, opens a connection per probe and follows
// redirects only to the same host: a redirect elsewhere counts as success.
func NewHTTP() *HTTP {
	t := &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe targets
		DisableKeepAlives:  true,
		DisableCompression: true,
		Proxy:              nil,
		DialContext:        dialer.DialContext,
	}
	return &HTTP{client: &http.Client{Transport: t, CheckRedirect: sameHost}}
}

func sameHost(req *http.Request, via []*http.Request) error {
	if req.URL.Host != via[0].URL.Host || len(via) >= maxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// Get probes u with headers. A status from 200 to 399 is success; the
// output is the start of the body.
func (p *HTTP) Get(ctx context.Context, u *url.URL, headers http.Header) (Result, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Failure, "", fmt.Errorf("build probe request: %w", err)
	}
	req.Header = headers.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", userAgent)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "*/*")
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return Failure, err.Error(), nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Failure, fmt.Sprintf("read response body: %v", err), nil
	}
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= http.StatusBadRequest {
		return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode), nil
	}
	return Success, string(body), nil
}

// TCP succeeds when a connection to addr (host:port) opens.
func TCP(ctx context.Context, addr string) (Result, string, error) {
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Failure, err.Error(), nil
	}
	conn.Close()
	return Success, "", nil
}

// GRPC asks the standard health service at addr (host:port) about service
// ("" is the server as a whole), in plain text as kubelet does; SERVING is
// success.
func GRPC(ctx context.Context, addr, service string) (Result, string, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent(userAgent),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		return Failure, "", fmt.Errorf("create gRPC client for %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	switch status.Code(err) {
	case codes.OK:
	case codes.Unimplemented:
		return Failure, "this server does not implement the grpc health protocol (grpc.health.v1.Health)", nil
	case codes.DeadlineExceeded:
		return Failure, "timeout: health rpc did not complete within the probe's timeout", nil
	default:
		return Failure, fmt.Sprintf("error: health rpc probe failed: %v", err), nil
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return Failure, fmt.Sprintf("service unhealthy (responded with %q)", st), nil
	}
	return Success, "", nil
}
