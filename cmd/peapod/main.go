// Command peapod runs Kubernetes Pod manifests from a directory as isolated
// pods on this host: kubelet's static pods without an API server,
// containerd, CRI or CNI.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/peapod/peapod/runtime/container"
	"github.com/peapod/peapod/runtime/shim"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

// errSilent marks a failure that has already been reported to the user.
var errSilent = errors.New("failed")

func main() {
	// The runtime's re-exec stages come first, before cobra or anything
	// else can start goroutines or open files: the init stage runs inside
	// a new container's namespaces and must stay minimal.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case container.InitArg:
			container.RunInit() // never returns
		case container.ExecArg:
			container.RunExec() // never returns
		case shim.Command:
			shim.Main() // never returns
		}
	}
	if err := newRootCommand().Execute(); err != nil {
		var exit *exitCodeError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		if !errors.Is(err, errSilent) {
			fmt.Fprintln(os.Stderr, "peapod:", err)
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "peapod",
		Short: "Run Kubernetes Pod manifests from a directory as isolated pods",
		Long: "peapod watches a directory of Kubernetes Pod manifests and runs each pod in its own\n" +
			"network, IPC and UTS namespaces, each container in its own pid, mount and user namespaces.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCommand(), newValidateCommand(), newPsCommand(), newLogsCommand(), newExecCommand(),
		newImageCommand(), newVersionCommand())
	return root
}
