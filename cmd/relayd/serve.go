package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
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
		// The logging package reads 0 backups as its default; the config
		// key's 0 means keep all, which is its negative.
		MaxSizeMB:  c.Log.MaxSizeMB,
		MaxBackups: keepAll(c.Log.MaxBackups),
		MaxAgeDays: c.Log.MaxAgeDays,
	}
}

func keepAll(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func newServeCmd() *cobra.Command {
	var opts configs.LoadOptions
	var pidFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the relay daemon",
		Long: `Run the relay daemon.

Signals:
  SIGTERM, SIGINT  drain: stop accepting at once, let sessions finish for
                   shutdown.timeout, close the rest, exit 0 (a second one
                   cuts the drain short)
  SIGHUP           reload the config file; an invalid one is logged and the
                   running config stays
  SIGUSR2          zero-downtime upgrade: start the binary at the same path
                   with the listening sockets; once it is ready this process
                   stops accepting, drains and exits (--pid-file then holds
                   the new PID)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Env = true
			cfg, err := configs.Load(opts)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return serve(cfg, opts, pidFile)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&opts.File, "config", "c", "", "config file (YAML); see configs/relayd.yaml")
	f.StringVar(&opts.Listen, "listen", "", "listen address (quick mode, no file needed)")
	f.StringSliceVar(&opts.Upstreams, "upstream", nil, "upstream address(es), repeatable or comma-separated; several = round-robin with failover")
	f.StringVar(&pidFile, "pid-file", "", "write the PID here once ready (rewritten by each upgrade)")
	return cmd
}

func serve(cfg *configs.Config, opts configs.LoadOptions, pidFile string) error {
	log, err := logging.New(loggingConfig(cfg))
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = log.Close(ctx)
	}()
	if cfg.Processes.Workers() > 1 {
		return serveMaster(cfg, opts, pidFile, log)
	}
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile})
	if err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		return err
	}
	defer upg.Stop()
	flip := &flipper{upg: upg}
	defer flip.settle(false) // a start that failed: the parent keeps its sockets
	d, err := newDaemon(cfg, log, flip)
	if err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	// Everything is bound before "relayd ready" is logged: a taken admin
	// port fails the start, naming the key, instead of a ready line first.
	adm, err := startAdmin(cfg, d, upg)
	if err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		d.close()
		return err
	}
	defer adm.stop()
	if err := d.start(); err != nil {
		log.Z().Error("startup failed", zap.Error(err))
		return err
	}
	if err := upg.Ready(); err != nil { // writes the pid file, releases a waiting parent
		log.Z().Error("ready", zap.Error(err))
		d.close()
		return err
	}
	flip.settle(true)
	d.ready.Store(true)
	upgradeDone := make(chan error, 1)
	upgrading := false
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				next, err := configs.Load(opts)
				if err == nil {
					err = d.reload(next)
				}
				if err != nil {
					log.Z().Error("reload failed, keeping the running config", zap.Error(err))
				}
			case syscall.SIGUSR2:
				if upgrading {
					log.Z().Warn("upgrade already in progress")
					continue
				}
				upgrading = true
				log.Z().Info("upgrade: starting the new process")
				go func() { upgradeDone <- upg.Upgrade() }()
			default:
				if upgrading {
					// A successor is starting on the shared sockets: shutting
					// them down now (the drain does) would leave it serving
					// dead ones. Stop it first (tableflip kills a successor
					// that is not ready yet); if it got ready meanwhile, it
					// owns the sockets and this process hands off.
					upg.Stop()
					if err := <-upgradeDone; err == nil {
						<-upg.Exit()
						d.ready.Store(false)
						adm.close()
						d.relay.HandOff()
						return d.drain("upgrade, then " + sig.String())
					}
				}
				return d.drain(sig.String())
			}
		case err := <-upgradeDone:
			upgrading = false
			if err != nil {
				log.Z().Error("upgrade failed, still serving", zap.Error(err))
			}
		case err := <-d.relay.Dead():
			return d.die(err)
		case err := <-d.pool.Dead():
			return d.die(err)
		case <-upg.Exit():
			// The successor is ready and accepts on the shared sockets,
			// the admin one included: stop answering on it at once so that
			// probes reach the successor, not a draining process.
			d.ready.Store(false)
			adm.close()
			d.relay.HandOff()
			return d.drain("upgrade")
		}
	}
}

// drain stops accepting, lets sessions finish until shutdown.timeout (a
// further SIGTERM/SIGINT cuts it short) and closes the rest.
func (d *daemon) drain(why string) error {
	d.ready.Store(false) // /readyz turns 503 at once
	d.log.Z().Info("draining", zap.String("cause", why), zap.Duration("timeout", d.cfg.Shutdown.Timeout))
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Shutdown.Timeout)
	defer cancel()
	more := make(chan os.Signal, 1)
	signal.Notify(more, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(more)
	go func() {
		select {
		case <-more:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := d.shutdown(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// die ends a daemon whose relay loop or connector worker stopped on its own:
// its sessions are orphaned and part of the listening sockets is no longer
// accepted on, so carrying on would serve some clients and blackhole
// others. Exit 1, so that the supervisor (systemd Restart=, Kubernetes)
// starts a fresh process; readiness turns false at once.
func (d *daemon) die(err error) error {
	d.ready.Store(false)
	d.log.Z().Error("a relay loop or connector worker died; exiting so that the supervisor restarts relayd", zap.Error(err))
	d.close()
	return err
}
