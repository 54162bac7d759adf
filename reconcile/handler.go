package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/peapod/peapod/reconcile/probe"
)

// Execer runs a command in a running container of a pod, as `kubectl exec`
// does, and returns its exit code and combined output. A command still
// running after timeout is killed and Exec returns an error that
// errors.Is(err, context.DeadlineExceeded). Any other error means the
// command could not be run. It must be safe for concurrent use.
type Execer interface {
	Exec(ctx context.Context, uid types.UID, container string, cmd []string, timeout time.Duration) (exitCode int, output []byte, err error)
}

// errNoExec is returned for an exec action when the controller has no
// Execer.
var errNoExec = errors.New("exec actions are not available: the agent was built without an Execer")

// actionTarget is the container that the actions of its probes and hooks
// act on. Network actions dial host, the pod's address, from the agent's
// network namespace, as kubelet does: no thread enters the pod's.
type actionTarget struct {
	uid       types.UID
	container *corev1.Container
	host      string
	exec      Execer
	http      *probe.HTTP
}

// probe runs one probe action and returns its result and output. An error
// means it could not be run: kubelet then throws the result away.
func (t actionTarget) probe(ctx context.Context, h *corev1.ProbeHandler, timeout time.Duration) (probe.Result, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		return t.runExec(ctx, h.Exec.Command, timeout)
	case h.HTTPGet != nil:
		return t.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		return t.tcpSocket(ctx, h.TCPSocket)
	case h.GRPC != nil:
		service := ""
		if h.GRPC.Service != nil {
			service = *h.GRPC.Service
		}
		return probe.GRPC(ctx, net.JoinHostPort(t.host, strconv.Itoa(int(h.GRPC.Port))), service)
	}
	return probe.Failure, "", errors.New("probe has no action")
}

// hook runs one lifecycle hook action and returns why it failed, with the
// action's output.
func (t actionTarget) hook(ctx context.Context, h *corev1.LifecycleHandler) error {
	var (
		r   probe.Result
		out string
		err error
	)
	switch {
	case h.Sleep != nil:
		return sleep(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
	case h.Exec != nil:
		// Kubelet gives a hook command no timeout of its own: the grace
		// period, or nothing for postStart, bounds it.
		r, out, err = t.runExec(ctx, h.Exec.Command, 0)
	case h.HTTPGet != nil:
		r, out, err = t.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		r, out, err = t.tcpSocket(ctx, h.TCPSocket)
	default:
		return errors.New("hook has no action")
	}
	switch {
	case err != nil:
		return err
	case r == probe.Failure:
		return fmt.Errorf("hook failed: %s", strings.TrimSpace(out))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t actionTarget) runExec(ctx context.Context, cmd []string, timeout time.Duration) (probe.Result, string, error) {
	if t.exec == nil {
		return probe.Failure, "", errNoExec
	}
	code, out, err := t.exec.Exec(ctx, t.uid, t.container.Name, cmd, timeout)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return probe.Failure, fmt.Sprintf("command %q timed out", strings.Join(cmd, " ")), nil
	case err != nil:
		return probe.Failure, "", fmt.Errorf("exec %q in container %s: %w", strings.Join(cmd, " "), t.container.Name, err)
	case code != 0:
		return probe.Failure, fmt.Sprintf("command %q exited with %d: %s", strings.Join(cmd, " "), code, out), nil
	}
	return probe.Success, string(out), nil
}

func (t actionTarget) httpGet(ctx context.Context, a *corev1.HTTPGetAction) (probe.Result, string, error) {
	port, err := resolvePort(a.Port, t.container)
	if err != nil {
		return probe.Failure, "", err
	}
	host := a.Host
	if host == "" {
		host = t.host
	}
	u, err := url.Parse(a.Path)
	if err != nil {
		u = &url.URL{Path: a.Path}
	}
	u.Scheme = strings.ToLower(string(a.Scheme))
	if u.Scheme == "" {
		u.Scheme = "http"
	}
	u.Host = net.JoinHostPort(host, strconv.Itoa(port))
	headers := http.Header{}
	for _, h := range a.HTTPHeaders {
		headers.Add(h.Name, h.Value)
	}
	return t.http.Get(ctx, u, headers)
}

func (t actionTarget) tcpSocket(ctx context.Context, a *corev1.TCPSocketAction) (probe.Result, string, error) {
	port, err := resolvePort(a.Port, t.container)
	if err != nil {
		return probe.Failure, "", err
	}
	host := a.Host
	if host == "" {
		host = t.host
	}
	return probe.TCP(ctx, net.JoinHostPort(host, strconv.Itoa(port)))
}

// resolvePort returns the number of a port given by number or by the name
// of one of the container's ports, as kubelet does (a name that is a
// number is taken as one).
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	n := p.IntValue()
	if p.Type == intstr.String {
		n = -1
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				n = int(cp.ContainerPort)
			}
		}
		if v, err := strconv.Atoi(p.StrVal); n < 0 && err == nil {
			n = v
		}
	}
	if n <= 0 || n > 65535 {
		return 0, fmt.Errorf("port %s of container %s: not a port number or the name of one of its ports", p.String(), c.Name)
	}
	return n, nil
}
