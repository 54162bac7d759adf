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
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

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

// dialer sets SO_LINGER to 1 s on probe sockets, as kubelet's probe
// dialer does.
var dialer = &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 1})
	})
	return errors.Join(err, serr)
}}

// HTTP is an HTTP prober; its zero value is ready to use, and it is safe
// for concurrent use.
//
// It follows kubelet's client: certificates are not verified, no proxy is
// used, each probe opens its own connection (Connection: close) and
// follows redirects only to the same host, a redirect elsewhere counting as
// success. It writes the request and parses the response with net/http's
// own Request.Write and ReadResponse over one connection instead of going
// through an http.Transport, whose connection pool, per-connection
// goroutines and channels a connection used once does not need: that
// halves the agent's CPU per probe.
type HTTP struct{}

// NewHTTP returns an HTTP prober.
func NewHTTP() *HTTP { return &HTTP{} }

// Get probes u with headers. A status from 200 to 399 is success; the
// output is the start of the body. ctx bounds the whole probe.
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
	req.Header.Del("Host")
	req.Close = true
	for redirects := 0; ; redirects++ {
		code, body, loc, err := roundTrip(ctx, req)
		switch {
		case ctx.Err() != nil:
			// The deadline on the connection fired: say why.
			err = ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's deadline is ctx's, and its timer may fire
			// a moment before ctx's own.
			err = context.DeadlineExceeded
		}
		if err != nil {
			return Failure, err.Error(), nil
		}
		if loc != nil && loc.Host == req.URL.Host && redirects < maxRedirects {
			req = req.Clone(ctx)
			req.URL, req.Host = loc, ""
			if h := headers.Get("Host"); h != "" {
				req.Host = h
			}
			continue
		}
		if code < http.StatusOK || code >= http.StatusBadRequest {
			return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d", code), nil
		}
		return Success, body, nil
	}
}

// roundTrip sends req on a connection of its own and returns the status,
// the start of the body and, for a redirect, where to.
func roundTrip(ctx context.Context, req *http.Request) (code int, body string, redirect *url.URL, err error) {
	conn, err := dialer.DialContext(ctx, "tcp", canonicalAddr(req.URL))
	if err != nil {
		return 0, "", nil, err
	}
	defer conn.Close()
	// A deadline on the connection bounds every read and write by ctx;
	// cancelling ctx expires it at once.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if req.URL.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: req.URL.Hostname()}) //nolint:gosec // kubelet does not verify probe targets
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, "", nil, err
		}
		conn = tc
	}
	bw := writers.Get().(*bufio.Writer)
	defer putWriter(bw)
	bw.Reset(conn)
	if err := req.Write(bw); err != nil {
		return 0, "", nil, err
	}
	if err := bw.Flush(); err != nil {
		return 0, "", nil, err
	}
	br := readers.Get().(*bufio.Reader)
	defer putReader(br)
	br.Reset(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, "", nil, fmt.Errorf("read response body: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		redirect, _ = resp.Location()
	}
	return resp.StatusCode, string(b), redirect, nil
}

// Buffers are reused across probes: a probe every second per pod would
// otherwise allocate 8 KiB of them each time, and the garbage collector
// scan the agent's heap that much more often.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1024) }}
)

// putReader and putWriter return buffers to their pools without the
// connection they held.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// canonicalAddr returns u's host:port, with the scheme's default port.
func canonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
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
