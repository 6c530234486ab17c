// Package admin is relayd's admin HTTP endpoint: Prometheus metrics,
// liveness and readiness probes, and optionally pprof. It is off the data
// path: it runs on net/http goroutines of its own and only reads snapshots.
//
// # Use
//
//	srv, err := admin.New(admin.Config{
//		Listen:      cfg.Admin.Listen, // "127.0.0.1:9090"; skip New when ""
//		AllowRemote: cfg.Admin.AllowRemote,
//		Pprof:       cfg.Admin.Pprof,
//		Version:     version,
//		ErrorLog:    zap.NewStdLog(z),
//	}, admin.Sources{
//		Relay:      relaySrv.Stats,
//		Connector:  pool.Stats,
//		LogDropped: logger.Dropped,
//		LogWritten: logger.Written,
//		Ready:      ready.Load, // atomic.Bool: true once bound, false when draining
//	})
//	if err != nil { ... }                    // wraps ErrRemoteRefused / ErrInvalidConfig, names admin.listen
//	if err := srv.Start(); err != nil { ... } // bind error
//	z.Info("admin", zap.Stringer("addr", srv.Addr()))
//	...
//	ready.Store(false) // drain begins: /readyz answers 503 at once
//	...
//	srv.Shutdown(ctx) // last, so /metrics covers the drain
//
// # Routes
//
//   - /metrics: Prometheus text format. relayd_* metrics (see NewCollector
//     and OPERATIONS.md), process_* (open and max fds, CPU, RSS) and go_*.
//   - /healthz: 200 "ok" while the process serves HTTP at all.
//   - /readyz: 200 "ready" while Sources.Ready returns true, else 503.
//   - /debug/pprof/: only with Config.Pprof.
//
// Every route takes GET and HEAD only; any other method gets 405 and
// reaches no handler. Nothing here changes the daemon's state.
//
// # How metrics are made
//
// The relay loops and connector workers keep plain atomic counters that
// they own (see relay.Stats, connector.Stats). At scrape time the collector
// calls the Sources once each and turns the snapshots into const metrics,
// so the data path never calls into Prometheus and a scrape costs one
// snapshot, not one metric update per event. A snapshot is not atomic
// across counters: two related series can be a few events apart.
//
// # Safety
//
// The endpoint has no authentication, so a non-loopback Listen is refused
// unless AllowRemote is set (checked on the address; nothing is bound).
// Put it behind a firewall or a proxy when you allow it.
//
// # Zero-downtime upgrade
//
// The old process holds the admin address while it drains, so a new
// process that calls Start fails with EADDRINUSE. Open the admin listener
// through tableflip instead (ln, err := upg.Listen("tcp", cfg.Listen)) and
// pass it to StartListener: the first process creates it, each successor
// inherits it. When the old process hands off (upg.Exit), it must Close
// its admin server before draining: otherwise both processes accept on the
// shared socket and a probe hitting the draining one gets a 503 from
// /readyz. The old process's drain is then not scraped; its access log
// still records every session.
//
// # Control API
//
// With Config.Control, GET /upstreams answers the upstreams as JSON and
// POST /upstreams/state drains, disables or enables one (control.go). A
// state change is admitted only over the control socket (ServeControl on
// ListenControl's mode-0600 socket, the peer's SO_PEERCRED uid this
// process's or root) or over Listen with the bearer Config.Token, compared
// in constant time; anything else is 401. It is the one POST route.
//
// # Non-goals
//
// No TLS (put the admin endpoint on loopback or behind a proxy that has
// it), no reload or upgrade over HTTP (they are signals), no push gateway,
// no per-session metrics.
//
// # Concurrency
//
// New, Start, StartListener, Shutdown, Close and Addr are safe to call from
// any goroutine. Sources are called concurrently by simultaneous scrapes
// and must be safe for that. Shutdown and Close wait for the serve
// goroutine; a handler stuck in a Source outlives a forced Shutdown until
// that Source returns.
package admin
