//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/resolve"
	"github.com/relayd/relayd/logging"
)

// Dialer is the seam to the connector stage: relay hands it requests and
// gets results back through connector.Handler. *connector.Pool implements it.
type Dialer interface {
	Submit(r *connector.Request) error
}

// UpstreamRegistry is implemented by a Dialer that keeps per-upstream state
// (*connector.Pool: caps, queues, pacing, health). The server registers each
// forward listener's upstreams with it and names them in its requests, and
// registers an empty list when the listener goes.
type UpstreamRegistry interface {
	SetUpstreams(listener string, cfgs []connector.UpstreamConfig) ([]*connector.Upstream, error)
}

// Config configures a Server. Zero values are safe defaults for the internet.
type Config struct {
	Loops       int           // relay event loops; 0 = runtime.GOMAXPROCS(0), the CPUs this process may use (affinity, cgroup quota), as the daemon's relay.loops
	BufferSize  int           // bytes per direction per session in flight; 0 = 32 KiB
	IdleTimeout time.Duration // no byte either way; 0 = 5 min
	FinTimeout  time.Duration // a half-closed session's life; 0 = 30 s
	NoDelay     bool          // TCP_NODELAY on accepted sockets (the connector sets its own)
	Reuseport   bool          // true: one SO_REUSEPORT listener per loop; false: loop 0 accepts and hands out round-robin
	// Balanced (with Reuseport): a loop that accepts a client hands it to
	// the loop with the fewest sessions when that is not itself, so the
	// kernel's hash of a few long sessions cannot load one loop alone.
	Balanced    bool
	Backlog     int // listen backlog; 0 = 4096
	MaxSessions int // global cap on live sessions in this process; 0 = unlimited
	// Shared, when set, also counts every session against caps shared with
	// other processes (a multi-process relayd: internal/shm), after this
	// process's own MaxSessions and the listener's MaxSessions.
	Shared SharedCaps
	Tick   time.Duration // timing-wheel resolution; 0 = 10 ms
	// Splice is SpliceAuto ("" too: bulk directions switch to splice(2),
	// see splice_linux.go) or SpliceOff (always read/write).
	Splice         string
	SplicePipes    int // pipes per loop (2 fds each); 0 = DefaultSplicePipes
	SplicePipeSize int // bytes per pipe, a spliced direction's bound; 0 = DefaultSplicePipeSize
	// TrimAfter is the quiet after a burst of buffer use when the process
	// collects and returns freed memory (trim.go); 0 = DefaultTrimAfter,
	// < 0 = never.
	TrimAfter time.Duration
	// Clock is the loops' clock; nil = time.Now. Tests inject one to decide
	// when idle, fin and handshake deadlines are due (evloop.NewWithClock).
	Clock func() time.Time

	// AccessInterval, when > 0, writes an interim access record of every
	// relaying session each time it is another interval older, and
	// AccessOnConnect a start record when its upstream connects (both
	// reloadable: SetAccessRecords; access.go).
	AccessInterval  time.Duration
	AccessOnConnect bool

	Dialer Dialer          // required
	Log    *logging.Logger // nil = logging.Nop()
	Zap    *zap.Logger     // overrides Log.Z() when set (tests)
}

// Splice settings (Config.Splice) and defaults.
const (
	SpliceAuto            = "auto"
	SpliceOff             = "off"
	DefaultSplicePipes    = 16
	DefaultSplicePipeSize = 256 << 10
)

// Listener modes: where a session's upstream comes from.
const (
	ModeForward     = "forward"      // the listener's Upstreams
	ModeSOCKS5      = "socks5"       // the client names it in a SOCKS5 CONNECT
	ModeHTTPConnect = "http-connect" // the client names it in an HTTP CONNECT
)

// ListenerConfig is one listening address and where its sessions go.
//
// Server.Update swaps every setting but Name and Addr on a running
// listener, the edge settings (Mode and below FDs) included. A session
// takes the settings it lives by when it starts and keeps them, whatever a
// later Update does.
type ListenerConfig struct {
	Name      string
	Addr      netip.AddrPort
	Upstreams []netip.AddrPort // at least one in ModeForward; ignored (may be empty) otherwise
	LeastConn bool             // false: round-robin
	// Weights share new sessions among Upstreams in proportion (smooth
	// weighted round-robin, or least sessions per weight with LeastConn):
	// nil = all 1; else one per upstream, 1..MaxWeight.
	Weights []int
	// Check is the upstreams' active health check (connector.CheckConfig);
	// the zero value = none, passive health only.
	Check       connector.CheckConfig
	Tries       int // connect attempts in total across upstreams; 0 = len(Upstreams)
	MaxSessions int // 0 = unlimited
	// Sources are local addresses for upstream connects, one per session
	// round-robin (IP_BIND_ADDRESS_NO_PORT: the port is picked per
	// destination); nil = the kernel's choice. Many sessions to few
	// upstream addresses need several: each (source, destination) pair
	// has ~28,000 ephemeral ports.
	Sources []netip.Addr
	// CapKey is the listener's key in Config.Shared (its per-listener cap
	// across processes); 0 = only the shared global cap.
	CapKey int
	// FDs are inherited listening sockets to adopt instead of binding anew
	// (zero-downtime upgrade): every one is adopted, FDs[i] by loop i mod
	// the accepting loops (all on loop 0 in single-acceptor mode); loops
	// beyond len(FDs) bind their own SO_REUSEPORT socket to the same
	// address. The server owns them from AddListener on.
	FDs []int

	// Mode is ModeForward ("" means it), ModeSOCKS5 or ModeHTTPConnect.
	Mode string
	// HandshakeTimeout bounds everything before relaying starts for a
	// session that has a handshake (PROXY header, SOCKS5 / HTTP CONNECT
	// request, name resolution): the whole phase, not an inactivity limit,
	// so a client trickling a byte a second cannot hold its slot. 0 = 10 s.
	HandshakeTimeout time.Duration
	// Verify checks SOCKS5 / HTTP CONNECT credentials; nil = no auth.
	Verify auth.Verifier
	// Policy decides which client-chosen destinations are allowed (SOCKS5,
	// HTTP CONNECT); nil = the default policy (deny loopback, private,
	// link-local ... ranges). The listener's own bound address is refused
	// in any case (rule "self"), also when it was bound to port 0.
	Policy *policy.Policy
	// Resolver resolves target names off the loop; nil = names are refused
	// (SOCKS5 "host unreachable", HTTP 502).
	Resolver *resolve.Resolver
	// ProxyAccept is the PROXY protocol version expected from Trusted peers:
	// 0 (none), proxyproto.V1, V2 or Any. Peers outside Trusted are plain
	// clients: they cannot claim another address.
	ProxyAccept proxyproto.Version
	Trusted     []netip.Prefix
	// ProxySend writes a PROXY header of this version (0 = none, V1 or V2)
	// to the upstream before any client byte.
	ProxySend proxyproto.Version
	// ACL admits clients by source address (the PROXY header's source when
	// one was accepted); nil admits everyone.
	ACL *policy.SourceACL
	// Limiter caps sessions and new sessions per second per source; nil =
	// none. It may be shared between listeners.
	Limiter *policy.SourceLimiter

	// Routes, on a forward listener, pick the upstream group of each
	// session from its first bytes (edge_peek.go); the listener's own
	// Upstreams are the default group. Tried in order.
	Routes []Route

	// edge holds the listener's edge counters. validate makes it, and
	// AddListener keeps the validated copy, so callers never set it.
	edge *edgeState
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Loops < 0 || cfg.BufferSize < 0 || cfg.IdleTimeout < 0 || cfg.FinTimeout < 0 || cfg.Backlog < 0 || cfg.MaxSessions < 0 ||
		cfg.SplicePipes < 0 || cfg.SplicePipeSize < 0 {
		return cfg, errors.New("relay: negative value in Config")
	}
	switch cfg.Splice {
	case "":
		cfg.Splice = SpliceAuto
	case SpliceAuto, SpliceOff:
	default:
		return cfg, fmt.Errorf("relay: Config.Splice %q: want %q or %q", cfg.Splice, SpliceAuto, SpliceOff)
	}
	if cfg.SplicePipes == 0 {
		cfg.SplicePipes = DefaultSplicePipes
	}
	if cfg.SplicePipeSize == 0 {
		cfg.SplicePipeSize = DefaultSplicePipeSize
	}
	if cfg.TrimAfter == 0 {
		cfg.TrimAfter = DefaultTrimAfter
	}
	if cfg.Loops == 0 {
		cfg.Loops = max(1, runtime.GOMAXPROCS(0))
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = 32 << 10
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	if cfg.FinTimeout == 0 {
		cfg.FinTimeout = 30 * time.Second
	}
	if cfg.Backlog == 0 {
		cfg.Backlog = defaultBacklog
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	if cfg.Dialer == nil {
		return cfg, errors.New("relay: Config.Dialer is required")
	}
	if cfg.Log == nil {
		cfg.Log = logging.Nop()
	}
	if cfg.Zap == nil {
		cfg.Zap = cfg.Log.Z()
	}
	return cfg, nil
}

func (lc *ListenerConfig) validate() error {
	if !lc.Addr.IsValid() {
		return fmt.Errorf("relay: listener %q: invalid address", lc.Name)
	}
	switch lc.Mode {
	case "", ModeForward:
		if len(lc.Upstreams) == 0 {
			return fmt.Errorf("relay: listener %q: no upstreams", lc.Name)
		}
	case ModeSOCKS5, ModeHTTPConnect:
	default:
		return fmt.Errorf("relay: listener %q: unknown mode %q", lc.Name, lc.Mode)
	}
	if lc.HandshakeTimeout < 0 {
		return fmt.Errorf("relay: listener %q: negative handshake timeout", lc.Name)
	}
	if lc.ProxyAccept > proxyproto.Any || lc.ProxySend > proxyproto.V2 {
		return fmt.Errorf("relay: listener %q: invalid PROXY protocol version", lc.Name)
	}
	if lc.ProxyAccept != 0 && len(lc.Trusted) == 0 {
		return fmt.Errorf("relay: listener %q: PROXY protocol accept needs trusted sources", lc.Name)
	}
	lc.prepareEdge()
	for _, u := range lc.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return fmt.Errorf("relay: listener %q: invalid upstream %v", lc.Name, u)
		}
	}
	if lc.Weights != nil && len(lc.Weights) != len(lc.Upstreams) {
		return fmt.Errorf("relay: listener %q: %d weights for %d upstreams", lc.Name, len(lc.Weights), len(lc.Upstreams))
	}
	for _, w := range lc.Weights {
		if w < 1 || w > MaxWeight {
			return fmt.Errorf("relay: listener %q: weight %d out of 1..%d", lc.Name, w, MaxWeight)
		}
	}
	if err := lc.Check.Validate("check"); err != nil {
		return fmt.Errorf("relay: listener %q: %w", lc.Name, err)
	}
	if lc.Tries < 0 || lc.MaxSessions < 0 {
		return fmt.Errorf("relay: listener %q: negative tries or max sessions", lc.Name)
	}
	return lc.validateRoutes()
}
