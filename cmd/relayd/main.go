// Command relayd is a high-concurrency TCP connect-and-relay proxy.
//
//	relayd serve --listen 127.0.0.1:7000 --upstream 127.0.0.1:7001
//	relayd serve --config configs/relayd.yaml
//	relayd config check --config FILE
//	relayd demo            # sink + relayd + short load, on loopback
//	relayd sink / relayd load   # the load generator and sink
//
// Exit codes: 0 success (including a drained shutdown), 1 runtime error,
// 2 invalid config or usage.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/loadtest"
	"github.com/relayd/relayd/loadtest/report"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); otherwise
// the module build info is used.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		return v + " " + bi.GoVersion
	}
	return "unknown"
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// newLoadCmd is `relayd load` with its report and merge subcommands.
func newLoadCmd() *cobra.Command {
	c := loadtest.LoadCommand()
	c.AddCommand(report.Command(), loadtest.MergeCommand())
	return c
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "relayd",
		Short:         "High-concurrency TCP connect-and-relay proxy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newWorkerCmd(), newConfigCmd(), newVersionCmd(), newDemoCmd(), newCtlCmd(),
		loadtest.SinkCommand(), newLoadCmd())
	// A bad flag is a usage error (exit 2); subcommands inherit this.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return root
}

// usageError reports whether err is cobra's complaint about the command line
// rather than a failure of the command. cobra gives these no type, so they
// are known by their fixed wording (cobra v1: args.go, command.go).
func usageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command ", "required flag(s) ", "accepts ", "unknown flag: ", "unknown shorthand flag: ", "flag needs an argument: ", "invalid argument "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "relayd", versionString())
		},
	}
}

func newConfigCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Configuration tools"}
	var file string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate a config file and print the effective config (exit 2 if invalid)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := configs.Load(configs.LoadOptions{File: file, Env: true})
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			y, err := c.YAML()
			if err != nil {
				return err
			}
			if w := sessionCapWarning(c); w != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "relayd: warning:", w)
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	check.Flags().StringVarP(&file, "config", "c", "", "config file (YAML)")
	_ = check.MarkFlagRequired("config")
	cfg.AddCommand(check)
	return cfg
}

func main() {
	err := newRoot().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "relayd:", err)
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.Is(err, configs.ErrInvalid), usageError(err):
		os.Exit(2)
	}
	os.Exit(1)
}
