package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudflare/tableflip"
	"go.uber.org/zap"

	"github.com/relayd/relayd/admin"
	"github.com/relayd/relayd/configs"
)

// adminServer is the running admin endpoint, or nothing when admin.listen
// is empty.
type adminServer struct{ srv *admin.Server }

// startAdmin serves /metrics, /healthz, /readyz (and pprof if enabled) on
// admin.listen. The socket comes from tableflip so that an upgraded
// successor inherits it instead of failing to bind a port still held here.
func startAdmin(cfg *configs.Config, d *daemon, upg *tableflip.Upgrader) (adminServer, error) {
	if cfg.Admin.Listen == "" && controlSocketPath(cfg) == "" {
		return adminServer{}, nil
	}
	srv, err := admin.New(admin.Config{
		Listen:      cfg.Admin.Listen,
		Unix:        cfg.Admin.Listen == "", // the control socket alone
		AllowRemote: cfg.Admin.AllowRemote,
		Pprof:       cfg.Admin.Pprof,
		Version:     versionString(),
		ErrorLog:    zap.NewStdLog(d.log.Z()),
		Control:     daemonControl(d),
		Token:       cfg.Admin.Token,
	}, daemonSources(d))
	if err != nil {
		return adminServer{}, err
	}
	if err := serveControlSocket(cfg, srv, upg.HasParent(), d.log.Z()); err != nil {
		_ = srv.Close()
		return adminServer{}, err
	}
	if cfg.Admin.Listen == "" {
		return adminServer{srv}, nil
	}
	ln, err := upg.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return adminServer{}, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	if err := srv.StartListener(ln); err != nil {
		return adminServer{}, err
	}
	d.log.Z().Info("admin endpoint", zap.String("listen", ln.Addr().String()), zap.Bool("pprof", cfg.Admin.Pprof))
	return adminServer{srv}, nil
}

// daemonSources are d's snapshots for the admin endpoint.
func daemonSources(d *daemon) admin.Sources {
	return admin.Sources{
		Relay:      d.relay.Stats,
		Connector:  d.pool.Stats,
		Upstreams:  d.pool.UpstreamStats,
		LogDropped: d.log.Dropped,
		LogWritten: d.log.Written,
		LogSampled: d.log.Sampled,
		LogWErrs:   d.log.WriteErrors,
		Edge:       d.relay.EdgeStats,
		Ready:      d.ready.Load,
	}
}

func (a adminServer) close() {
	if a.srv != nil {
		_ = a.srv.Close()
	}
}

func (a adminServer) stop() {
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
	}
}
