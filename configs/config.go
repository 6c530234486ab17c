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
	Listeners []Listener `mapstructure:"listeners"`
	Connector Connector  `mapstructure:"connector"`
	Relay     Relay      `mapstructure:"relay"`
	Accept    Accept     `mapstructure:"accept"`
	Limits    Limits     `mapstructure:"limits"`
	Shutdown  Shutdown   `mapstructure:"shutdown"`
	Log       Log        `mapstructure:"log"`
	Admin     Admin      `mapstructure:"admin"`
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
	// Retries is how many further upstreams (the next ones in the list) a
	// session tries after a failed connect. Default len(Upstreams)-1, at most
	// 3; 0 means no failover.
	Retries int `mapstructure:"retries"`
	// Mode is ModeForward (default). ModeSOCKS5 and ModeHTTPConnect are
	// reserved for a later release and rejected for now.
	Mode string `mapstructure:"mode"`
	// MaxSessions caps concurrent sessions on this listener; 0 = no
	// per-listener cap (Limits.MaxSessions still applies).
	MaxSessions int `mapstructure:"max_sessions"`
}

// Connector configures the pool that connects sessions to upstreams.
type Connector struct {
	// Workers is the number of connector event loops. Default 2.
	Workers int `mapstructure:"workers"`
	// MaxInflight caps connects in progress per worker. Default 32.
	MaxInflight int `mapstructure:"max_inflight"`
	// Queue bounds sessions waiting for a connect slot; when it is full a new
	// client is rejected at once (and counted). Default 4096.
	Queue int `mapstructure:"queue"`
	// ConnectTimeout bounds one connect attempt. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
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
	// Mode is AcceptReusePort (default: every relay loop has its own
	// SO_REUSEPORT listener per listen address, the kernel spreads clients)
	// or AcceptSingle (one acceptor hands clients to loops round-robin).
	Mode string `mapstructure:"mode"`
	// Backlog is the listen(2) backlog. Default 4096 (the kernel caps it at
	// net.core.somaxconn).
	Backlog int `mapstructure:"backlog"`
}

// Limits are global caps.
type Limits struct {
	// MaxSessions caps concurrent sessions over all listeners; 0 = unlimited.
	// Default 100000.
	MaxSessions int `mapstructure:"max_sessions"`
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
}

// Allowed values of the enumerated keys.
const (
	BalanceRoundRobin = "round-robin"
	BalanceLeastConn  = "least-conn"

	ModeForward     = "forward"
	ModeSOCKS5      = "socks5"
	ModeHTTPConnect = "http-connect"

	AcceptReusePort = "reuseport"
	AcceptSingle    = "single"
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
			Queue:          4096,
			ConnectTimeout: 5 * time.Second,
		},
		Relay: Relay{
			Loops:       0,
			BufferSize:  32 << 10,
			IdleTimeout: 5 * time.Minute,
			FinTimeout:  30 * time.Second,
			NoDelay:     true,
		},
		Accept: Accept{Mode: AcceptReusePort, Backlog: 4096},
		Limits: Limits{MaxSessions: 100000},
		Shutdown: Shutdown{
			Timeout: 30 * time.Second,
		},
		Log: Log{
			Level:    "info",
			Format:   "json",
			Output:   "stderr",
			RingSize: 8192,
			Access:   true,
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
	}
}

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
	}
}
