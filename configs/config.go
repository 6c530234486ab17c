package configs

import (
	"runtime"
	"strconv"
	"time"
)

// Config is relayd's whole configuration. The zero value is not useful:
// start from Default (or Load, which does) so that "set nothing" means the
// documented defaults. Field docs state each default and what 0 means.
type Config struct {
	// Processes is how many worker processes relay: 1 (default) is one
	// process, relayd as it always was; N ≥ 2 is a master that binds the
	// sockets and supervises N workers (the same binary, re-executed);
	// ProcessesAuto ("auto") is one worker per CPU. relay.* and connector.*
	// apply per worker. Restart-only.
	Processes ProcessCount `mapstructure:"processes"`
	Listeners []Listener   `mapstructure:"listeners"`
	Connector Connector    `mapstructure:"connector"`
	Relay     Relay        `mapstructure:"relay"`
	Accept    Accept       `mapstructure:"accept"`
	Limits    Limits       `mapstructure:"limits"`
	Shutdown  Shutdown     `mapstructure:"shutdown"`
	Resolver  Resolver     `mapstructure:"resolver"`
	Log       Log          `mapstructure:"log"`
	Admin     Admin        `mapstructure:"admin"`
}

// ProcessCount is Config.Processes: a number, or ProcessesAuto.
type ProcessCount int

// ProcessesAuto, written "auto", is one worker process per CPU.
const ProcessesAuto ProcessCount = -1

// Workers is the number of worker processes p means on this machine; 1 is
// the single-process mode (no master).
func (p ProcessCount) Workers() int {
	if p == ProcessesAuto {
		return runtime.NumCPU()
	}
	return int(p)
}

// Listener is one listen address and what to do with its clients.
type Listener struct {
	// Name labels the listener in logs and metrics. Default "l<index>"
	// ("l0", "l1", ...); the quick flag --listen names its listener "default".
	Name string `mapstructure:"name"`
	// Listen is host:port with an IP-literal host, or an empty host for all
	// addresses (":7000"). Names such as "localhost" are rejected: a name
	// can resolve to several addresses, and the listener must know which.
	// Port 0 asks the kernel for a free port.
	Listen string `mapstructure:"listen"`
	// Upstreams are host:port targets with IP-literal hosts; at least one is
	// required in mode forward.
	Upstreams []string `mapstructure:"upstreams"`
	// Balance picks the first upstream for a session: BalanceRoundRobin
	// (default) or BalanceLeastConn.
	Balance string `mapstructure:"balance"`
	// Retries is how many further connect attempts a session makes after a
	// failed one, each to the next upstream in the list, wrapping around (so
	// with one upstream a retry reconnects to it). Default len(Upstreams)-1,
	// at most 3; 0 means no failover.
	Retries int `mapstructure:"retries"`
	// Weights share sessions among Upstreams in proportion: empty = all 1,
	// else one per upstream, 1..256.
	Weights []int `mapstructure:"weights"`
	// Check is the active health check of this listener's upstreams.
	Check Check `mapstructure:"check"`
	// Mode is ModeForward (default: relay to Upstreams), ModeSOCKS5 or
	// ModeHTTPConnect (the client names its target, checked by Policy;
	// Upstreams must then be empty).
	Mode string `mapstructure:"mode"`
	// Source is the local address (or addresses) upstream connects are
	// made from: "" (default) lets the kernel pick; "A", "A,B" or a range
	// "A-B" (see ParseAddrList) binds each session's connect to the next
	// address in turn, port picked at connect (IP_BIND_ADDRESS_NO_PORT), as
	// HAProxy's source / nginx's proxy_bind. Each (source, upstream) pair
	// has ~28,000 ports, so many sessions to few upstreams need several.
	Source string `mapstructure:"source"`
	// MaxSessions caps concurrent sessions on this listener; 0 = no
	// per-listener cap (Limits.MaxSessions still applies).
	MaxSessions int `mapstructure:"max_sessions"`
	// HandshakeTimeout bounds everything before relaying starts: the PROXY
	// header, the SOCKS5 / HTTP CONNECT request, name resolution. Default 10s.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
	// Auth requires credentials (socks5 and http-connect only).
	Auth Auth `mapstructure:"auth"`
	// ProxyProtocol accepts and sends HAProxy PROXY protocol headers.
	ProxyProtocol ProxyProtocol `mapstructure:"proxy_protocol"`
	// ACL admits clients by source address.
	ACL ACL `mapstructure:"acl"`
	// Limits are per-source limits on this listener.
	Limits SourceLimits `mapstructure:"limits"`
	// Policy restricts client-chosen destinations (socks5, http-connect).
	Policy Policy `mapstructure:"policy"`
	// Routes pick each session's upstream group from what its client
	// sends first (TLS SNI / ALPN, HTTP Host); Upstreams are the default
	// group. Forward mode only. See Route.
	Routes []Route `mapstructure:"routes"`
}

// Auth is a listener's credentials: Users and the lines of File together.
// None of either means no authentication.
type Auth struct {
	// Users are "user:password" entries (the password is everything after
	// the first ':').
	Users []string `mapstructure:"users"`
	// File is a path to a file of "user:password" lines ('#' comments).
	File string `mapstructure:"file"`
}

// ProxyProtocol configures the PROXY protocol on a listener.
type ProxyProtocol struct {
	// Accept is ProxyNone (default), ProxyV1, ProxyV2 or ProxyAny: the
	// header expected from TrustedSources.
	Accept string `mapstructure:"accept"`
	// TrustedSources are the CIDRs allowed to send a header (required when
	// Accept is not none); other peers are plain clients.
	TrustedSources []string `mapstructure:"trusted_sources"`
	// Send is ProxyNone (default), ProxyV1 or ProxyV2: a header written to
	// the upstream before the client's bytes.
	Send string `mapstructure:"send"`
}

// ACL is a source allow/deny list of CIDRs. Deny wins; an empty Allow
// allows every source not denied.
type ACL struct {
	Allow []string `mapstructure:"allow"`
	Deny  []string `mapstructure:"deny"`
}

// SourceLimits are per-source-address limits; 0 = unlimited.
type SourceLimits struct {
	// PerSourceSessions caps concurrent sessions from one source (IPv6: one
	// /64).
	PerSourceSessions int `mapstructure:"per_source_sessions"`
	// PerSourceRate caps new sessions per second from one source (a token
	// bucket with a burst of the same size). Failed logins count too.
	PerSourceRate int `mapstructure:"per_source_rate"`
}

// Policy is the destination policy of a socks5 / http-connect listener.
// Loopback, private, link-local (incl. 169.254.169.254), CGNAT,
// multicast, unspecified and relayd's own addresses are denied unless an
// Allow entry inside that range re-opens part of it.
type Policy struct {
	// Allow, when not empty, is an allow-list: "CIDR" or "CIDR PORTS", with
	// PORTS a comma list of ports and ranges ("127.0.0.1/32 8080",
	// "0.0.0.0/0 80,443", "::/0 1024-65535").
	Allow []string `mapstructure:"allow"`
	// Deny entries, same syntax, are checked first and always win.
	Deny []string `mapstructure:"deny"`
}

// Resolver configures the name resolution for socks5 / http-connect
// targets, shared by all listeners, off the relay loops.
type Resolver struct {
	// Workers is the number of lookups at once. Default 4.
	Workers int `mapstructure:"workers"`
	// Queue bounds lookups waiting for a worker; when full the client is
	// refused at once. Default 1024.
	Queue int `mapstructure:"queue"`
	// Timeout bounds one lookup. Default 5s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Connector configures the pool that connects sessions to upstreams.
type Connector struct {
	// Workers is the number of connector event loops. Default 2.
	Workers int `mapstructure:"workers"`
	// MaxInflight caps connects in progress per worker. Default 32.
	MaxInflight int `mapstructure:"max_inflight"`
	// Queue bounds sessions waiting for a connect slot; when it is full a new
	// client is rejected at once (and counted). Default 16384.
	Queue int `mapstructure:"queue"`
	// ConnectTimeout bounds one connect attempt, its wait for a connect
	// slot included. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// Pacing is PacingAdaptive (default: each upstream's connects in
	// flight follow a loss-based controller, see the connector package) or
	// PacingFixed (UpstreamMaxInflight each).
	Pacing string `mapstructure:"pacing"`
	// UpstreamMaxInflight caps connects in flight to one upstream: the
	// fixed cap, or the adaptive limit's ceiling. Default 32.
	UpstreamMaxInflight int `mapstructure:"upstream_max_inflight"`
	// UpstreamQueue bounds sessions waiting for one upstream; when full a
	// new client is rejected at once. Default 8192.
	UpstreamQueue int `mapstructure:"upstream_queue"`
	// Health is passive upstream health.
	Health Health `mapstructure:"health"`
}

// Pacing modes.
const (
	PacingAdaptive = "adaptive"
	PacingFixed    = "fixed"
)

// Health marks an upstream down after FailAfter consecutive failed connects
// (refused, timeout, unreachable), for Backoff, doubling while the trial
// connect after it fails, up to BackoffMax.
type Health struct {
	// FailAfter: 0 turns passive health off. Default 3.
	FailAfter  int           `mapstructure:"fail_after"`
	Backoff    time.Duration `mapstructure:"backoff"`     // default 1s
	BackoffMax time.Duration `mapstructure:"backoff_max"` // default 30s
}

// Check is a listener's active health check of its upstreams: a TCP connect
// to each every Interval (0 = off), bounded by Timeout; Rise successes in a
// row bring a down upstream back, Fall failures take it down.
type Check struct {
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"` // 0 = min(interval, connector.connect_timeout)
	Rise     int           `mapstructure:"rise"`
	Fall     int           `mapstructure:"fall"`
}

// Relay configures the event loops that move bytes.
type Relay struct {
	// Loops is the number of relay event loops; 0 (default) means one per
	// usable CPU, see LoopCount.
	Loops int `mapstructure:"loops"`
	// BufferSize is bytes per direction per session while data is in flight.
	// Default 32768. The file accepts 32768, "32KiB" or "64k" (all units are
	// binary: k = KiB = 1024).
	BufferSize int `mapstructure:"buffer_size"`
	// IdleTimeout closes a session with no traffic either way. Default 5m;
	// must be > 0 so that an internet-facing relay never holds a dead peer
	// forever.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// FinTimeout replaces IdleTimeout once a session is half-closed (one
	// side sent FIN, the other has not): an inactivity limit, so a long reply
	// after a half-close still flows. Default 30s.
	FinTimeout time.Duration `mapstructure:"fin_timeout"`
	// NoDelay sets TCP_NODELAY on both sides. Default true.
	NoDelay bool `mapstructure:"no_delay"`
	// Splice is SpliceAuto (default: a bulk direction switches to splice(2)
	// through a pipe) or SpliceOff (always read/write through user space).
	Splice string `mapstructure:"splice"`
	// SplicePipes caps the pipes each loop lends to spliced directions (2
	// fds each; see SplicePipeCount). Default 16.
	SplicePipes int `mapstructure:"splice_pipes"`
	// SplicePipeSize is each pipe's capacity: a spliced direction's bound.
	// Default 262144 (256 KiB).
	SplicePipeSize int `mapstructure:"splice_pipe_size"`
	// TrimAfter: once the relay buffers have gone this long untouched after
	// a burst (64 or more taken), the process collects and returns the
	// freed memory to the kernel; 0 turns it off. Default 5s.
	TrimAfter time.Duration `mapstructure:"trim_after"`
}

// Relay.Splice values.
const (
	SpliceAuto = "auto"
	SpliceOff  = "off"
)

// SplicePipeCount is the pipes per loop in effect for a process that may
// open nofile files: relay.splice_pipes, but never more than a sixteenth of
// the limit over all loops (an eighth of the fds), so a small ulimit keeps
// its descriptors for sessions; 0 with splicing off.
func (c *Config) SplicePipeCount(nofile uint64) int {
	if c.Relay.Splice == SpliceOff {
		return 0
	}
	return min(c.Relay.SplicePipes, int(min(nofile, 1<<31)/16)/c.Relay.LoopCount())
}

// LoopCount is the number of relay loops to start: Loops, or when it is 0 the
// number of CPUs the Go runtime will use (runtime.GOMAXPROCS(0)). That equals
// runtime.NumCPU() on a plain machine, and is lower under a container CPU
// quota or an explicit GOMAXPROCS, where more loops than runnable threads
// would only add context switches.
func (r Relay) LoopCount() int {
	if r.Loops > 0 {
		return r.Loops
	}
	return max(1, runtime.GOMAXPROCS(0))
}

// Accept configures how client connections are accepted.
type Accept struct {
	// Mode is AcceptBalanced (default: every relay loop has its own
	// SO_REUSEPORT listener per listen address, and a loop hands a client
	// it accepts to the loop with clearly fewer sessions, as Envoy's
	// exact_balance), AcceptReusePort (the kernel's hash alone spreads
	// clients) or AcceptSingle (one acceptor hands clients to loops
	// round-robin).
	Mode string `mapstructure:"mode"`
	// Backlog is the listen(2) backlog. Default 4096 (the kernel caps it at
	// net.core.somaxconn).
	Backlog int `mapstructure:"backlog"`
}

// Limits are global caps.
type Limits struct {
	// MaxSessions caps concurrent sessions over all listeners; clients over
	// it are closed at once (rejected_limit). 0 (the default) derives it from
	// the open-file limit: see SessionCap. -1 = no cap.
	MaxSessions int `mapstructure:"max_sessions"`
}

// FDReserve is how many file descriptors relayd needs besides its sessions
// when it may open nofile: stdio, log and admin files and connections, each
// loop's epoll and eventfd (a connector worker's pace alarm is a third),
// the listening sockets (one per loop and listener with reuseport) and the
// splice pipes (SplicePipeCount per loop, two fds each), with room to spare.
func (c *Config) FDReserve(nofile uint64) int {
	socks := len(c.Listeners)
	if c.Accept.Mode != AcceptSingle {
		socks *= c.Relay.LoopCount()
	}
	return 64 + 3*c.Relay.LoopCount() + 4*c.Connector.Workers + socks + 2*c.SplicePipeCount(nofile)*c.Relay.LoopCount()
}

// SessionCap is the global session cap in effect for a process that may open
// nofile files, and how many sessions those files can hold (two fds each,
// after FDReserve), as HAProxy derives maxconn from the ulimit. With
// limits.max_sessions 0 the cap is that capacity (at least 1); an explicit
// cap is kept as it is, -1 meaning none (0 returned).
func (c *Config) SessionCap(nofile uint64) (limit, capacity int) {
	capacity = 1
	if free := int64(min(nofile, 1<<31)) - int64(c.FDReserve(nofile)); free > 2 {
		capacity = int(free / 2)
	}
	switch n := c.Limits.MaxSessions; {
	case n > 0:
		return n, capacity
	case n < 0:
		return 0, capacity
	}
	return capacity, capacity
}

// Shutdown configures SIGTERM/SIGINT handling.
type Shutdown struct {
	// Timeout is how long running sessions may finish after a stop signal
	// before they are closed; 0 closes them at once. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `mapstructure:"level"`
	// Format is json (default) or console.
	Format string `mapstructure:"format"`
	// Output is stderr (default), stdout, or a file path.
	Output string `mapstructure:"output"`
	// RingSize is the number of entries buffered between the loops and the
	// log writer; when full, entries are dropped and counted. Default 8192.
	RingSize int `mapstructure:"ring_size"`
	// Access logs one line per finished session. Default true.
	Access bool `mapstructure:"access"`
	// AccessInterval, when set, also logs an interim line (bytes so far)
	// of every relaying session each time it is this much older; 0 = off
	// (the default). 1s to 24h.
	AccessInterval time.Duration `mapstructure:"access_interval"`
	// AccessOnConnect also logs a start line when a session's upstream
	// connects. Default false.
	AccessOnConnect bool `mapstructure:"access_on_connect"`
	// MaxSizeMB rotates a file output at this size. Default 100.
	MaxSizeMB int `mapstructure:"max_size_mb"`
	// MaxBackups is how many rotated files are kept; 0 keeps all. Default 5.
	MaxBackups int `mapstructure:"max_backups"`
	// MaxAgeDays removes rotated files older than this; 0 = no age limit.
	MaxAgeDays int `mapstructure:"max_age_days"`
}

// Admin configures the admin HTTP endpoint (metrics, health, pprof).
type Admin struct {
	// Listen is host:port with an IP-literal host; "" disables the endpoint.
	// Default "127.0.0.1:9090". A non-loopback address needs AllowRemote.
	Listen string `mapstructure:"listen"`
	// AllowRemote permits a non-loopback Listen. Default false.
	AllowRemote bool `mapstructure:"allow_remote"`
	// Pprof serves /debug/pprof/. Default false.
	Pprof bool `mapstructure:"pprof"`
	// Socket is the Unix socket of the control API (state changes: drain,
	// disable, enable an upstream), mode 0600. "" means
	// $RUNTIME_DIRECTORY/admin.sock when systemd gives a runtime directory,
	// else none; "off" means none.
	Socket string `mapstructure:"socket"`
	// Token, if set, allows state changes over admin.listen with
	// "Authorization: Bearer <token>" (at least 16 characters). Without it
	// they are refused there, whatever the request carries.
	Token string `mapstructure:"token"`
}

// SocketOff is the admin.socket value that disables the control socket.
const SocketOff = "off"

// Allowed values of the enumerated keys.
const (
	BalanceRoundRobin = "round-robin"
	BalanceLeastConn  = "least-conn"

	ModeForward     = "forward"
	ModeSOCKS5      = "socks5"
	ModeHTTPConnect = "http-connect"

	ProxyNone = "none"
	ProxyV1   = "v1"
	ProxyV2   = "v2"
	ProxyAny  = "any"

	AcceptReusePort = "reuseport"
	AcceptSingle    = "single"
	AcceptBalanced  = "balanced"
)

// maxDefaultRetries caps the derived Retries default: trying every upstream
// of a long list would hold a client for len(upstreams)×connect_timeout.
const maxDefaultRetries = 3

// Default returns the built-in defaults. It has no listeners: there is no
// sensible default address to relay to, so Load insists on one from a file or
// the quick flags. configs/relayd.yaml documents the same values (a test
// keeps the two equal).
func Default() Config {
	return Config{
		Connector: Connector{
			Workers:        2,
			MaxInflight:    32,
			Queue:          16384,
			ConnectTimeout: 5 * time.Second,

			Pacing:              PacingAdaptive,
			UpstreamMaxInflight: 32,
			UpstreamQueue:       8192,
			Health:              Health{FailAfter: 3, Backoff: time.Second, BackoffMax: 30 * time.Second},
		},
		Relay: Relay{
			Loops:          0,
			BufferSize:     32 << 10,
			IdleTimeout:    5 * time.Minute,
			FinTimeout:     30 * time.Second,
			NoDelay:        true,
			Splice:         SpliceAuto,
			SplicePipes:    16,
			SplicePipeSize: 256 << 10,
			TrimAfter:      5 * time.Second,
		},
		Processes: 1,
		Accept:    Accept{Mode: AcceptBalanced, Backlog: 4096},
		Limits:    Limits{MaxSessions: 0},
		Resolver:  Resolver{Workers: 4, Queue: 1024, Timeout: 5 * time.Second},
		Shutdown: Shutdown{
			Timeout: 30 * time.Second,
		},
		Log: Log{
			Level:      "info",
			Format:     "json",
			Output:     "stderr",
			RingSize:   8192,
			Access:     true,
			MaxSizeMB:  100,
			MaxBackups: 5,
		},
		Admin: Admin{Listen: "127.0.0.1:9090"},
	}
}

// NewListener returns a listener with every default filled in, for callers
// that build a Config in code (tests, the quick flags).
func NewListener(name, listen string, upstreams ...string) Listener {
	return Listener{
		Name:      name,
		Listen:    listen,
		Upstreams: upstreams,
		Balance:   BalanceRoundRobin,
		Retries:   DefaultRetries(len(upstreams)),
		Mode:      ModeForward,

		HandshakeTimeout: DefaultHandshakeTimeout,
		ProxyProtocol:    ProxyProtocol{Accept: ProxyNone, Send: ProxyNone},
		Check:            Check{Rise: DefaultRise, Fall: DefaultFall},
	}
}

// Defaults of Listener.Check.
const (
	DefaultRise = 2
	DefaultFall = 3
)

// DefaultHandshakeTimeout is Listener.HandshakeTimeout's default.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultRetries is the Retries default for a listener with n upstreams:
// fail over through the whole list, but to at most 3 more upstreams.
func DefaultRetries(n int) int {
	return min(max(n-1, 0), maxDefaultRetries)
}

// SetDefaults fills the listener fields whose empty value means "default":
// Name ("l<index>"), Balance and Mode. Retries cannot be told apart from an
// explicit 0 here, so Load derives it from whether the file set it.
func (c *Config) SetDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = "l" + strconv.Itoa(i)
		}
		if l.Balance == "" {
			l.Balance = BalanceRoundRobin
		}
		if l.Mode == "" {
			l.Mode = ModeForward
		}
		if l.HandshakeTimeout == 0 {
			l.HandshakeTimeout = DefaultHandshakeTimeout
		}
		if l.Check.Rise == 0 {
			l.Check.Rise = DefaultRise
		}
		if l.Check.Fall == 0 {
			l.Check.Fall = DefaultFall
		}
		if l.ProxyProtocol.Accept == "" {
			l.ProxyProtocol.Accept = ProxyNone
		}
		if l.ProxyProtocol.Send == "" {
			l.ProxyProtocol.Send = ProxyNone
		}
		// "[]" in a file and an absent key mean the same: no entries.
		if len(l.Weights) == 0 {
			l.Weights = nil
		}
		for _, p := range []*[]string{&l.Auth.Users, &l.ProxyProtocol.TrustedSources, &l.ACL.Allow, &l.ACL.Deny, &l.Policy.Allow, &l.Policy.Deny} {
			if len(*p) == 0 {
				*p = nil
			}
		}
		if len(l.Routes) == 0 {
			l.Routes = nil
		}
		for j := range l.Routes {
			r := &l.Routes[j]
			if len(r.Weights) == 0 {
				r.Weights = nil
			}
			for _, p := range []*[]string{&r.SNI, &r.ALPN, &r.Host, &r.Upstreams} {
				if len(*p) == 0 {
					*p = nil
				}
			}
			if r.Check.Rise == 0 {
				r.Check.Rise = DefaultRise
			}
			if r.Check.Fall == 0 {
				r.Check.Fall = DefaultFall
			}
		}
	}
}
