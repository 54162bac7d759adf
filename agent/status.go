package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SocketName is the status API's unix socket, inside --state.
const SocketName = "agent.sock"

// PodLister is what the status API serves: the controller's view of every pod.
type PodLister interface {
	Pods() []corev1.Pod
}

// rejectedLister lists the manifest files the agent refused.
type rejectedLister interface {
	list() []RejectedFile
}

// Info is what the agent tells its clients about itself, so that they need
// not repeat its flags.
type Info struct {
	// LogDir is the agent's --log-dir.
	LogDir string `json:"logDir"`
}

// statusHandler serves the status API:
//
//	GET /v1/info                   the agent's Info
//	GET /v1/pods                   a v1.PodList of every pod
//	GET /v1/pods/{namespace}/{name} one v1.Pod
//	GET /v1/rejected               the rejected manifest files ([]RejectedFile)
func statusHandler(pods PodLister, rejected rejectedLister, info Info) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, info)
	})
	mux.HandleFunc("GET /v1/rejected", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, rejected.list())
	})
	mux.HandleFunc("GET /v1/pods", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, podList(pods.Pods()))
	})
	mux.HandleFunc("GET /v1/pods/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("namespace"), r.PathValue("name")
		for _, p := range pods.Pods() {
			if p.Namespace == ns && p.Name == name {
				writeJSON(w, withPodType(p))
				return
			}
		}
		http.Error(w, fmt.Sprintf("pod %s/%s not found", ns, name), http.StatusNotFound)
	})
	return mux
}

func podList(pods []corev1.Pod) *corev1.PodList {
	list := &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: pods}
	for i := range list.Items {
		list.Items[i] = withPodType(list.Items[i])
	}
	if list.Items == nil {
		list.Items = []corev1.Pod{}
	}
	return list
}

func withPodType(p corev1.Pod) corev1.Pod {
	p.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	return p
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// listenStatus creates the status socket in stateDir, readable and writable
// by root only: the API shows every pod's environment-derived details and
// will grow verbs (exec, logs) that must not reach other users.
func listenStatus(stateDir string) (net.Listener, error) {
	path := filepath.Join(stateDir, SocketName)
	// A socket left by a dead agent would make listen fail; the agent lock
	// (taken before this) guarantees no live agent owns it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale status socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("restrict status socket: %w", err)
	}
	return l, nil
}

// serve runs srv on l until ctx is done, then shuts it down gracefully.
func serve(ctx context.Context, log *slog.Logger, srv *http.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http server shutdown", "addr", l.Addr().String(), "err", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Client reads the status API of the agent whose --state is StateDir.
type Client struct {
	StateDir string
}

// ListPods returns every pod the agent knows.
func (c *Client) ListPods(ctx context.Context) (*corev1.PodList, error) {
	var list corev1.PodList
	if err := c.get(ctx, "/v1/pods", &list); err != nil {
		return nil, err
	}
	return &list, nil
}

// GetPod returns one pod.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var pod corev1.Pod
	if err := c.get(ctx, "/v1/pods/"+namespace+"/"+name, &pod); err != nil {
		return nil, err
	}
	return &pod, nil
}

// Rejected returns the manifest files the agent refused.
func (c *Client) Rejected(ctx context.Context) ([]RejectedFile, error) {
	var files []RejectedFile
	if err := c.get(ctx, "/v1/rejected", &files); err != nil {
		return nil, err
	}
	return files, nil
}

// Info returns what the agent tells about itself.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var info Info
	if err := c.get(ctx, "/v1/info", &info); err != nil {
		return nil, err
	}
	return &info, nil
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	sock := filepath.Join(c.StateDir, SocketName)
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	// One connection per call: closed here, or a client that polls (ps in
	// a loop, logs -f) would keep one open in the agent per call.
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://peapod"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reach the agent at %s (is `peapod agent --state %s` running, and are you root?): %w", sock, c.StateDir, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &statusError{code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// ErrNotFound matches (errors.Is) a Client error for a pod the agent does
// not know.
var ErrNotFound = errors.New("not found")

// statusError is an error answer of the status API.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return "agent: " + e.msg }

func (e *statusError) Is(target error) bool {
	return target == ErrNotFound && e.code == http.StatusNotFound
}
