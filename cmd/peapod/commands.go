package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/peapod/peapod/agent"
	"github.com/peapod/peapod/manifests"
)

func newAgentCommand() *cobra.Command {
	flags := agent.DefaultConfig()
	configFile := agent.DefaultConfigFile
	var printConfig bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent: watch --manifests and keep its pods running",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := configFile
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && !cmd.Flags().Changed("config") {
				// The default file is optional; a file named on the
				// command line is not.
				path = ""
			}
			cfg, err := agent.LoadConfig(path, cmd.Flags(), &flags)
			if err != nil {
				return err
			}
			if printConfig {
				b, err := yaml.Marshal(cfg)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(b)
				return err
			}
			log := cfg.NewLogger(os.Stderr)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := agent.Run(ctx, cfg, log); err != nil {
				log.Error("agent failed", "err", err)
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configFile, "config", configFile, "YAML file with the same keys as the flags (optional at its default path); flags given on the command line win")
	cmd.Flags().BoolVar(&printConfig, "print-config", false, "print the effective configuration as YAML and exit")
	flags.BindFlags(cmd.Flags())
	return cmd
}

func newValidateCommand() *cobra.Command {
	var policy manifests.Policy
	cmd := &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Check manifest files as the agent would, without running anything",
		Long: "Decode and validate each FILE as the agent would, and each DIR as the agent reads its\n" +
			"--manifests directory (ownership and modes checked, duplicates reported). Errors name the\n" +
			"file, the document and the field; every problem of a document is reported at once. Warnings\n" +
			"name fields peapod accepts but ignores, and mounts of host system directories. A pod defined\n" +
			"twice among the arguments is an error, as the agent would run only the first. Exit status 1\n" +
			"if anything fails.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := policy.Check(); err != nil {
				return fmt.Errorf("--allowed-unsafe-sysctls: %w", err)
			}
			v := validation{definedIn: map[string]string{}}
			for _, arg := range args {
				if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
					v.snapshot(policy.Load(arg))
					continue
				}
				pods, err := policy.DecodeFile(arg)
				v.file(arg, pods, err)
			}
			if v.failed {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&policy.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", nil,
		"unsafe sysctls or patterns the agent allows (its --allowed-unsafe-sysctls)")
	return cmd
}

// validation prints what `peapod validate` found, argument by argument.
type validation struct {
	// definedIn maps each pod key seen so far to its file.
	definedIn map[string]string
	failed    bool
}

// snapshot reports a directory read as the agent reads it.
func (v *validation) snapshot(s manifests.Snapshot) {
	for _, fe := range s.Errors {
		fmt.Fprintln(os.Stderr, fe.Err)
		v.failed = true
	}
	for _, p := range s.Pods {
		v.pod(p.File, p)
	}
}

// file reports one manifest file.
func (v *validation) file(name string, pods []*manifests.Pod, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		v.failed = true
		return
	}
	for _, p := range pods {
		v.pod(name, p)
	}
}

func (v *validation) pod(file string, p *manifests.Pod) {
	for _, w := range p.Warnings {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", file, w)
	}
	if first, ok := v.definedIn[p.Key()]; ok {
		fmt.Fprintf(os.Stderr, "%s: pod %s is already defined in %s: the agent would run only one of them\n", file, p.Key(), first)
		v.failed = true
		return
	}
	v.definedIn[p.Key()] = file
	fmt.Printf("%s: pod %s ok (uid %s)\n", file, p.Key(), p.UID())
}

func newPsCommand() *cobra.Command {
	stateDir := agent.DefaultState
	var output string
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the agent's pods (like kubectl get pods -A)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			client := &agent.Client{StateDir: stateDir}
			list, err := client.ListPods(ctx)
			if err != nil {
				return err
			}
			// On stderr, so that -o json and -o yaml stay parseable.
			rejected, err := client.Rejected(ctx)
			if err != nil {
				return err
			}
			defer agent.PrintRejected(os.Stderr, rejected)
			switch output {
			case "":
				return agent.PrintPods(os.Stdout, list.Items, time.Now())
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "    ")
				return enc.Encode(list)
			case "yaml":
				b, err := yaml.Marshal(list)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(b)
				return err
			}
			return fmt.Errorf("-o %q: want json or yaml", output)
		},
	}
	cmd.Flags().StringVar(&stateDir, "state", stateDir, "the agent's --state directory")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml (a v1.PodList); default a table")
	return cmd
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Printf("peapod %s", version)
			if info, ok := debug.ReadBuildInfo(); ok {
				fmt.Printf(" (%s", info.GoVersion)
				for _, s := range info.Settings {
					if s.Key == "vcs.revision" {
						fmt.Printf(", commit %s", s.Value)
					}
				}
				fmt.Print(")")
			}
			fmt.Println()
		},
	}
}
