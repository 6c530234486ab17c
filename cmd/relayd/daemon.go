package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/logging"
	"github.com/relayd/relayd/relay"
)

// daemon is relayd's two stages wired together from a config.
type daemon struct {
	cfg   *configs.Config
	log   *logging.Logger
	pool  *connector.Pool
	relay *relay.Server
	addrs map[string]netip.AddrPort
	fds   fdHandoff    // nil: no upgrade support (demo, tests)
	ready atomic.Bool  // listeners bound and not draining (/readyz)
	edge  edgeShared   // resolver and own addresses for the edge listeners
	share *workerShare // nil: a process of its own; else a multi-process worker (worker.go)
	// shown is cfg for the admin endpoint's /config, which reads it from
	// its own goroutines (cfg itself is the signal loop's).
	shown atomic.Pointer[configs.Config]
}

// fdHandoff passes listening sockets between an old and a new relayd
// (zero-downtime upgrade); see upgrade.go.
type fdHandoff interface {
	// inherited returns the sockets a predecessor passed for listener name.
	inherited(name string, want netip.AddrPort) []int
	// publish offers the listener's sockets to a future successor.
	publish(name string, fds []int) error
}

func relayConfig(c *configs.Config) relay.Config {
	return relay.Config{
		Loops:           c.Relay.LoopCount(),
		BufferSize:      c.Relay.BufferSize,
		IdleTimeout:     c.Relay.IdleTimeout,
		FinTimeout:      c.Relay.FinTimeout,
		NoDelay:         c.Relay.NoDelay,
		Splice:          c.Relay.Splice,
		SplicePipes:     max(c.SplicePipeCount(nofile()), 1), // 0 would mean the default: splicing off sets Splice
		SplicePipeSize:  c.Relay.SplicePipeSize,
		TrimAfter:       c.Relay.TrimAfter,
		Reuseport:       c.Accept.Mode != configs.AcceptSingle,
		Balanced:        c.Accept.Mode == configs.AcceptBalanced,
		Backlog:         c.Accept.Backlog,
		MaxSessions:     sessionCap(c),
		AccessInterval:  c.Log.AccessInterval,
		AccessOnConnect: c.Log.AccessOnConnect,
	}
}

// nofile is this process's open-file limit (Go raises the soft limit to the
// hard one at start).
func nofile() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1 << 20
	}
	return rl.Cur
}

// sessionCap is the global session cap for c in this process (0 = none).
func sessionCap(c *configs.Config) int {
	n, _ := c.SessionCap(nofile())
	return n
}

// sessionCap is the session cap this process enforces itself. A worker of
// a multi-process relayd keeps only the cap its own open-file limit
// derives (limits.max_sessions: 0); an explicit limits.max_sessions counts
// over all workers in the shared table.
func (d *daemon) sessionCap(c *configs.Config) int {
	if d.share == nil {
		return sessionCap(c)
	}
	if c.Limits.MaxSessions != 0 {
		return 0
	}
	_, capacity := c.SessionCap(nofile())
	return capacity
}

// listenerConfig is l as the relay takes it; in a worker, the listener's
// max_sessions is counted in the shared table under the master's key.
func (d *daemon) listenerConfig(l configs.Listener) (relay.ListenerConfig, error) {
	lc, err := listenerConfig(&d.edge, l)
	if d.share != nil {
		lc.MaxSessions, lc.CapKey = 0, d.share.keys[l.Name]
	}
	return lc, err
}

// sessionCapWarning says why an explicit limits.max_sessions cannot be met
// by the open-file limit, or "" when it can.
func sessionCapWarning(c *configs.Config) string {
	limit, capacity := c.SessionCap(nofile())
	if c.Limits.MaxSessions == 0 || (limit > 0 && limit <= capacity) {
		return ""
	}
	return fmt.Sprintf("limits.max_sessions: %d sessions need %d open files, the open-file limit is %d: sessions past about %d will fail to connect (raise LimitNOFILE / ulimit -n, or set 0 to derive the cap)",
		c.Limits.MaxSessions, 2*max(limit, capacity)+c.FDReserve(nofile()), nofile(), capacity)
}

func listenerConfig(edge *edgeShared, l configs.Listener) (relay.ListenerConfig, error) {
	lc := relay.ListenerConfig{
		Name:        l.Name,
		LeastConn:   l.Balance == configs.BalanceLeastConn,
		Tries:       l.Retries + 1,
		MaxSessions: l.MaxSessions,
		Weights:     l.Weights,
		Check: connector.CheckConfig{
			Interval: l.Check.Interval, Timeout: l.Check.Timeout, Rise: l.Check.Rise, Fall: l.Check.Fall,
		},
	}
	var err error
	if lc.Sources, err = configs.ParseAddrList(l.Source); err != nil {
		return lc, fmt.Errorf("listener %s: source %w", l.Name, err)
	}
	if lc.Addr, err = netip.ParseAddrPort(normalizeListen(l.Listen)); err != nil {
		return lc, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	for _, u := range l.Upstreams {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			return lc, fmt.Errorf("listener %s: upstream %w", l.Name, err)
		}
		lc.Upstreams = append(lc.Upstreams, ap)
	}
	for _, r := range l.Routes {
		rc := relay.Route{Rule: r.Rule(), LeastConn: r.Balance == configs.BalanceLeastConn, Weights: r.Weights, Tries: r.Retries + 1,
			Check: connector.CheckConfig{Interval: r.Check.Interval, Timeout: r.Check.Timeout, Rise: r.Check.Rise, Fall: r.Check.Fall}}
		for _, u := range r.Upstreams {
			ap, err := netip.ParseAddrPort(u)
			if err != nil {
				return lc, fmt.Errorf("listener %s: route %s: upstream %w", l.Name, r.Name, err)
			}
			rc.Upstreams = append(rc.Upstreams, ap)
		}
		lc.Routes = append(lc.Routes, rc)
	}
	return lc, edge.apply(&lc, l)
}

// normalizeListen turns ":7000" (all addresses) into 0.0.0.0:7000: all IPv4
// addresses, which works on a host with IPv6 disabled, where [::] would not.
func normalizeListen(s string) string {
	if len(s) > 0 && s[0] == ':' {
		return "0.0.0.0" + s
	}
	return s
}

// poolConfig is the connector's configuration; health changes are logged
// once each, from the worker that saw them (the logger never blocks).
func poolConfig(cfg *configs.Config, log *logging.Logger) connector.Config {
	c := cfg.Connector
	failAfter := c.Health.FailAfter
	if failAfter == 0 {
		failAfter = -1 // the file's 0 is "off"; the connector's 0 is its default
	}
	return connector.Config{
		Workers:             c.Workers,
		MaxInflight:         c.MaxInflight,
		Queue:               c.Queue,
		ConnectTimeout:      c.ConnectTimeout,
		NoDelay:             cfg.Relay.NoDelay,
		Pacing:              c.Pacing,
		UpstreamMaxInflight: c.UpstreamMaxInflight,
		UpstreamQueue:       c.UpstreamQueue,
		FailAfter:           failAfter,
		Backoff:             c.Health.Backoff,
		BackoffMax:          c.Health.BackoffMax,
		OnHealth: func(ev connector.HealthEvent) {
			z := log.Z()
			fields := []zap.Field{zap.String("listener", ev.Key.Listener), zap.Stringer("upstream", ev.Key.Addr), zap.String("why", ev.Reason)}
			if ev.Up {
				z.Info("upstream up", append(fields, zap.Duration("was_down", ev.Down))...)
			} else {
				z.Warn("upstream down", append(fields, zap.Duration("retry_in", ev.Down))...)
			}
		},
	}
}

func newDaemon(cfg *configs.Config, log *logging.Logger, fds fdHandoff) (*daemon, error) {
	return buildDaemon(&daemon{cfg: cfg, log: log, fds: fds})
}

// buildDaemon wires d's stages from d.cfg; d.share, if set, makes it a
// worker of a multi-process relayd.
func buildDaemon(d *daemon) (*daemon, error) {
	cfg, log := d.cfg, d.log
	d.shown.Store(cfg)
	d.edge.setup(cfg) // edge.go: resolver settings, own addresses for the policies
	var err error
	d.pool, err = connector.New(poolConfig(cfg, log))
	if err != nil {
		return nil, err
	}
	rc := relayConfig(cfg)
	rc.Dialer, rc.Log = d.pool, log
	if d.share != nil {
		// The master's sockets, one per worker and listener, are all this
		// process accepts on: loop 0 accepts and hands sessions round-robin
		// to the others. The caps over all workers are the shared table's.
		rc.Reuseport, rc.Balanced = false, false
		rc.Shared = d.share.slot
		rc.MaxSessions = d.sessionCap(cfg)
	}
	if d.relay, err = relay.New(rc); err != nil {
		_ = d.pool.Close()
		return nil, err
	}
	d.relay.SetConnectTimeout(cfg.Connector.ConnectTimeout)
	for _, l := range cfg.Listeners {
		if err := d.addListener(l); err != nil {
			d.close()
			return nil, err
		}
	}
	d.addrs = d.relay.Addrs()
	return d, nil
}

// addListener binds (or inherits) a listener's sockets and publishes them
// for a future upgrade.
func (d *daemon) addListener(l configs.Listener) error {
	lc, err := d.listenerConfig(l)
	if err != nil {
		return err
	}
	if d.fds != nil {
		lc.FDs = d.fds.inherited(l.Name, lc.Addr)
	}
	if _, err := d.relay.AddListener(lc); err != nil {
		return err
	}
	if d.fds != nil {
		return d.fds.publish(l.Name, d.relay.ListenerFDs(l.Name))
	}
	return nil
}

func (d *daemon) start() error {
	if err := d.relay.Start(); err != nil {
		d.close()
		return err
	}
	fields := []zap.Field{
		zap.Int("loops", d.cfg.Relay.LoopCount()),
		zap.Int("connector_workers", d.cfg.Connector.Workers),
		zap.Int("connector_max_inflight", d.cfg.Connector.MaxInflight),
		zap.Int("buffer_size", d.cfg.Relay.BufferSize),
		zap.String("accept_mode", d.acceptMode()),
		zap.Int("max_sessions", d.sessionCap(d.cfg)),
		zap.Uint64("open_file_limit", nofile()),
	}
	if w := sessionCapWarning(d.cfg); w != "" {
		d.log.Z().Warn(w)
	}
	for name, a := range d.addrs {
		fields = append(fields, zap.String("listen."+name, a.String()))
	}
	msg := "relayd ready"
	if d.share != nil {
		msg = "worker serving" // the master says "relayd ready" once every worker does
	}
	d.log.Z().Info(msg, fields...)
	return nil
}

// acceptMode is how this process accepts, for the ready line.
func (d *daemon) acceptMode() string {
	if d.share != nil {
		return "worker: loop 0 accepts on the master's socket and hands out round-robin"
	}
	return d.cfg.Accept.Mode
}

// shutdown drains: stop accepting, wait for sessions until ctx ends, close
// the rest. It returns nil when everything drained in time.
func (d *daemon) shutdown(ctx context.Context) error {
	err := d.relay.Shutdown(ctx)
	st := d.relay.Stats()
	d.log.Z().Info("relayd stopped", zap.Uint64("sessions", st.ClosedTotal()),
		zap.Uint64("cut_at_shutdown", st.Closed[relay.ReasonShutdown.String()]))
	_ = d.pool.Close()
	d.edge.close()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil // cutting what was left at the deadline is the documented behaviour
	}
	return err
}

func (d *daemon) close() {
	if d.relay != nil {
		_ = d.relay.Close()
	}
	if d.pool != nil {
		_ = d.pool.Close()
	}
	d.edge.close()
}
