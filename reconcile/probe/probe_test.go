package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestHTTPGet(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "yes" || r.Host != "example.test" || !strings.HasPrefix(r.UserAgent(), "kube-probe/") {
			http.Error(w, "wrong headers", http.StatusBadRequest)
			return
		}
		w.Write([]byte("fine"))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewTLSServer(mux)
	t.Cleanup(tlsSrv.Close)

	headers := http.Header{"X-Probe": {"yes"}, "Host": {"example.test"}}
	p := NewHTTP()
	for _, tc := range []struct {
		name    string
		base    string
		path    string
		timeout time.Duration
		want    Result
		output  string
	}{
		{"success with headers and Host", plain.URL, "/ok", time.Second, Success, "fine"},
		{"HTTPS without verification", tlsSrv.URL, "/ok", time.Second, Success, "fine"},
		{"server error", plain.URL, "/fail", time.Second, Failure, "statuscode: 503"},
		{"redirect to another host is success", plain.URL, "/away", time.Second, Success, ""},
		{"redirect to the same host is followed", plain.URL, "/here", time.Second, Failure, "statuscode: 503"},
		{"a hanging target times out", plain.URL, "/hang", 100 * time.Millisecond, Failure, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse(tc.base + tc.path)
			c, cancel := context.WithTimeout(ctx(t), tc.timeout)
			defer cancel()
			got, out, err := p.Get(c, u, headers)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(out, tc.output) {
				t.Errorf("Get = %v %q, want %v containing %q", got, out, tc.want, tc.output)
			}
		})
	}
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if got, out, err := TCP(ctx(t), addr); err != nil || got != Success {
		t.Errorf("TCP to a listener = %v %q %v, want success", got, out, err)
	}
	l.Close()
	if got, out, err := TCP(ctx(t), addr); err != nil || got != Failure || !strings.Contains(out, "refused") {
		t.Errorf("TCP to a closed port = %v %q %v, want failure: refused", got, out, err)
	}
}

func TestGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	addr := l.Addr().String()

	bare := grpc.NewServer()
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go bare.Serve(lb)
	t.Cleanup(bare.Stop)

	for _, tc := range []struct {
		name, addr, service string
		want                Result
		output              string
	}{
		{"server serving", addr, "", Success, ""},
		{"service not serving", addr, "db", Failure, "NOT_SERVING"},
		{"unknown service", addr, "nope", Failure, "NotFound"},
		{"no health service", lb.Addr().String(), "", Failure, "does not implement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, out, err := GRPC(ctx(t), tc.addr, tc.service)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || !strings.Contains(out, tc.output) {
				t.Errorf("GRPC = %v %q, want %v containing %q", got, out, tc.want, tc.output)
			}
		})
	}
}

// BenchmarkHTTPGet measures one probe's cost on the agent's side, the
// server on loopback included.
func BenchmarkHTTPGet(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	b.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	p := NewHTTP()
	for b.Loop() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		if got, out, err := p.Get(c, u, nil); err != nil || got != Success {
			b.Fatalf("Get = %v %q %v", got, out, err)
		}
		cancel()
	}
}
