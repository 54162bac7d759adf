package runtime

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/image"
)

// commandLine is the container's command as Kubernetes builds it from the
// container and its image: command replaces the image's Entrypoint and
// drops its Cmd; args alone replace Cmd; neither runs Entrypoint then Cmd.
// $(VAR) references are expanded in command and args only, with lookup
// (the container's own environment: the image's Env is not visible to
// them, as in kubelet, which expands before the runtime adds the image's).
func commandLine(c *corev1.Container, cfg image.Config, x *expansion) ([]string, error) {
	var command, args []string
	for i, a := range c.Command {
		command = append(command, x.expand(fmt.Sprintf("command[%d]", i), a))
	}
	for i, a := range c.Args {
		args = append(args, x.expand(fmt.Sprintf("args[%d]", i), a))
	}
	if x.err != nil {
		return nil, configError(c, x.err.Error())
	}
	switch {
	case len(command) > 0:
		return append(command, args...), nil
	case len(args) > 0:
		return append(append([]string(nil), cfg.Entrypoint...), args...), nil
	default:
		return append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...), nil
	}
}

// withImageEnv lays the container's environment over the image's Env, as
// containerd merges them: a variable of both keeps the image's place and
// takes the container's value, the container's others follow. peapod's
// PATH default gives way to the image's PATH unless the container sets
// PATH itself.
func withImageEnv(imageEnv []string, env *envList, c *corev1.Container) []string {
	if len(imageEnv) == 0 {
		return env.environ()
	}
	out := &envList{}
	for _, kv := range imageEnv {
		name, value, _ := strings.Cut(kv, "=")
		out.set(name, value)
	}
	_, imagePath := out.lookup("PATH")
	for _, name := range env.names {
		if name == "PATH" && imagePath && !setsEnv(c, "PATH") {
			continue
		}
		out.set(name, env.values[name])
	}
	return out.environ()
}

func setsEnv(c *corev1.Container, name string) bool {
	for _, ev := range c.Env {
		if ev.Name == name {
			return true
		}
	}
	return false
}
