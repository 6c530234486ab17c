package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/logging"
)

func loggingConfig(c *configs.Config) logging.Config {
	return logging.Config{
		Level:    c.Log.Level,
		Format:   c.Log.Format,
		Output:   c.Log.Output,
		RingSize: c.Log.RingSize,
		Access:   c.Log.Access,
	}
}

func newServeCmd() *cobra.Command {
	var opts configs.LoadOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the relay daemon",
		Long: `Run the relay daemon until SIGTERM or SIGINT, then drain: stop accepting at
once, let sessions finish for shutdown.timeout, close the rest, exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Env = true
			cfg, err := configs.Load(opts)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return serve(cfg)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "config", "c", "", "config file (YAML); see configs/relayd.yaml")
	f.StringVar(&opts.Listen, "listen", "", "listen address (quick mode, no file needed)")
	f.StringSliceVar(&opts.Upstreams, "upstream", nil, "upstream address(es), repeatable or comma-separated; several = round-robin with failover")
	return cmd
}

func serve(cfg *configs.Config) error {
	log, err := logging.New(loggingConfig(cfg))
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = log.Close(ctx)
	}()
	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	if err := d.start(); err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		return err
	}
	sig := <-sigs
	log.Z().Info("draining", zap.String("signal", sig.String()), zap.Duration("timeout", cfg.Shutdown.Timeout))
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout)
	defer cancel()
	go func() {
		// A second signal cuts the drain short.
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	return d.shutdown(ctx)
}
