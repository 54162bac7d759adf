package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/peapod/peapod/agent"
	"github.com/peapod/peapod/runtime"
	"github.com/peapod/peapod/runtime/shim"
)

// exitCodeError makes peapod exit with code, having printed nothing.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func newExecCommand() *cobra.Command {
	stateDir := agent.DefaultState
	var namespace, container string
	var stdin, tty bool
	cmd := &cobra.Command{
		Use:   "exec [-n NAMESPACE] POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a running container (like kubectl exec)",
		Long: "Run COMMAND in a container of POD, inside all its namespaces and cgroups, as its user, with\n" +
			"its capabilities, no_new_privs, seccomp filter, environment and working directory. peapod\n" +
			"exits with the command's exit code (126: not executable, 127: not found). -c may be left\n" +
			"out: the pod's default container is used. -i streams stdin; -t gives the command a terminal\n" +
			"of the container's own /dev/pts. The command is killed if peapod is interrupted.",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return errors.New("usage: peapod exec POD [flags] -- COMMAND [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := runtime.ExecOptions{Args: args[1:], Stdout: os.Stdout, Stderr: os.Stderr}
			if stdin {
				opts.Stdin = os.Stdin
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if tty {
				restore, err := useTerminal(&opts)
				if err != nil {
					return err
				}
				defer restore()
			}
			code, err := (&agent.Client{StateDir: stateDir}).Exec(ctx, namespace, args[0], container, opts)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitCodeError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&stateDir, "state", stateDir, "the agent's --state directory")
	f.StringVarP(&namespace, "namespace", "n", "default", "the pod's namespace")
	f.StringVarP(&container, "container", "c", "", "container name; default: the pod's default container")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	return cmd
}

// useTerminal gives the exec a terminal of our terminal's size, follows
// its resizes (SIGWINCH) and, with stdin from a terminal, puts that one in
// raw mode, so that keys such as ^C reach the command. restore undoes it.
func useTerminal(opts *runtime.ExecOptions) (restore func(), err error) {
	opts.TTY = true
	out := int(os.Stdout.Fd())
	if w, h, err := term.GetSize(out); err == nil {
		opts.Size = shim.WindowSize{Width: uint16(w), Height: uint16(h)}
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	sizes := make(chan shim.WindowSize)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-winch:
			}
			w, h, err := term.GetSize(out)
			if err != nil {
				continue
			}
			select {
			case sizes <- shim.WindowSize{Width: uint16(w), Height: uint16(h)}:
			case <-quit:
				return
			}
		}
	}()
	opts.Resize = sizes
	undo := func() {
		signal.Stop(winch)
		close(quit)
		<-done
	}
	in := int(os.Stdin.Fd())
	if opts.Stdin == nil || !term.IsTerminal(in) {
		return undo, nil
	}
	state, err := term.MakeRaw(in)
	if err != nil {
		undo()
		return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
	}
	return func() { term.Restore(in, state); undo() }, nil
}
