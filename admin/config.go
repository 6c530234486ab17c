package admin

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by Config.Validate (and so by New), wrapped with the key
// and the offending value.
var (
	// ErrInvalidConfig: admin.listen is empty or not host:port with an
	// IP-literal host.
	ErrInvalidConfig = errors.New("admin: invalid config")
	// ErrRemoteRefused: admin.listen is not a loopback address and
	// admin.allow_remote is false. The endpoint has no authentication and
	// serves pprof when enabled, so exposing it is an explicit decision.
	ErrRemoteRefused = errors.New("admin: non-loopback admin.listen needs admin.allow_remote: true")
	// ErrStarted is returned by a second Start, or a Start after Shutdown.
	ErrStarted = errors.New("admin: already started or shut down")
)

// Config mirrors configs.Admin plus what only the binary knows.
type Config struct {
	// Listen is host:port with an IP-literal host ("127.0.0.1:9090",
	// "[::1]:9090"). An empty host (":9090") means every address and so
	// counts as remote. Port 0 asks the kernel for a free port (tests).
	// An empty Listen is an error: a caller that wants no endpoint does
	// not call New (configs: admin.listen "" disables it).
	Listen string
	// AllowRemote permits a non-loopback Listen.
	AllowRemote bool
	// Pprof serves net/http/pprof under /debug/pprof/. Off by default: a
	// CPU profile costs real CPU and the heap profile reveals internals.
	Pprof bool
	// Version is exported as relayd_build_info{version}. "" exports
	// "unknown".
	Version string
	// ErrorLog receives the HTTP server's own errors (bad requests,
	// accept failures) and the metric handler's collection errors. nil
	// means the standard logger; zap users pass zap.NewStdLog(z).
	ErrorLog *log.Logger
	// Unix says the caller serves the endpoint on a Unix socket it made
	// (StartListener): a multi-process worker's, which only its master
	// reads. Listen is then not used or checked.
	Unix bool
	// Merger, set in a multi-process master, makes /metrics the merge of
	// this process's registry and its workers' metrics.
	Merger *Merger
	// Collectors are registered beside relayd's own (the master's worker
	// gauges).
	Collectors []prometheus.Collector
	// Control, if set, serves the JSON API (GET /upstreams) and the state
	// changes (POST /upstreams/state): over the control socket
	// (ServeControl) freely, over Listen only with Token.
	Control *Control
	// Token is admin.token: the bearer that allows state changes over
	// Listen. "" refuses them there.
	Token string
}

// Validate checks Listen and the loopback rule. It does not bind.
func (c Config) Validate() error {
	if c.Unix {
		return nil
	}
	if c.Listen == "" {
		return fmt.Errorf("%w: admin.listen is empty (to disable the endpoint, do not start it)", ErrInvalidConfig)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("%w: admin.listen %q: %w", ErrInvalidConfig, c.Listen, err)
	}
	if _, err := netip.ParseAddrPort(c.Listen); err != nil && host != "" {
		return fmt.Errorf("%w: admin.listen %q: want an IP-literal host and a port", ErrInvalidConfig, c.Listen)
	}
	if c.AllowRemote || isLoopback(c.Listen) {
		return nil
	}
	return fmt.Errorf("admin.listen %q: %w", c.Listen, ErrRemoteRefused)
}

// isLoopback reports whether listen (already validated as host:port) binds
// only loopback addresses. ":port" (every address) and IPv4-mapped
// non-loopback addresses are not loopback.
func isLoopback(listen string) bool {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return false // empty host: all interfaces
	}
	a := ap.Addr().Unmap()
	return a.IsLoopback()
}
