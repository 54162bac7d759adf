package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/peapod/peapod/agent"
)

func newLogsCommand() *cobra.Command {
	stateDir := agent.DefaultState
	var opts agent.LogsOptions
	cmd := &cobra.Command{
		Use:   "logs [-f] [-p] [-c CONTAINER] [NAMESPACE/]POD",
		Short: "Print a container's log (like kubectl logs)",
		Long: "Print the log of a container of POD (namespace default unless given). The agent names the\n" +
			"pod's current attempt and its log directory; the file is read from there (or from\n" +
			"--log-dir, when given). -c may be left out when the pod has one container.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok {
				ns, name = "default", args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err := (&agent.Client{StateDir: stateDir}).Logs(ctx, os.Stdout, ns, name, opts)
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				// Interrupted while following: a normal end.
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state", stateDir, "the agent's --state directory")
	f.StringVar(&opts.LogDir, "log-dir", "", "read the log from this directory instead of the agent's --log-dir")
	f.StringVarP(&opts.Container, "container", "c", "", "container name; may be left out when the pod has one")
	f.BoolVarP(&opts.Follow, "follow", "f", false, "keep printing while the container runs")
	f.BoolVarP(&opts.Previous, "previous", "p", false, "print the log of the container's previous attempt")
	f.IntVar(&opts.Tail, "tail", -1, "lines from the end to print; 0 or less prints all")
	f.BoolVar(&opts.Timestamps, "timestamps", false, "prefix each line with its RFC3339Nano time")
	return cmd
}
