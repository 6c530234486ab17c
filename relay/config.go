package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/logging"
)

// Dialer is the seam to the connector stage: relay hands it requests and
// gets results back through connector.Handler. *connector.Pool implements it.
type Dialer interface {
	Submit(r *connector.Request) error
}

// Config configures a Server. Zero values are safe defaults for the internet.
type Config struct {
	Loops       int           // relay event loops; 0 = runtime.NumCPU()
	BufferSize  int           // bytes per direction per session in flight; 0 = 32 KiB
	IdleTimeout time.Duration // no byte either way; 0 = 5 min
	FinTimeout  time.Duration // a half-closed session's life; 0 = 30 s
	NoDelay     bool          // TCP_NODELAY on accepted sockets (the connector sets its own)
	Reuseport   bool          // true: one SO_REUSEPORT listener per loop; false: loop 0 accepts and hands out round-robin
	Backlog     int           // listen backlog; 0 = 4096
	MaxSessions int           // global cap on live sessions; 0 = unlimited
	Tick        time.Duration // timing-wheel resolution; 0 = 10 ms

	Dialer Dialer          // required
	Log    *logging.Logger // nil = logging.Nop()
	Zap    *zap.Logger     // overrides Log.Z() when set (tests)
}

// ListenerConfig is one listening address and where its sessions go.
type ListenerConfig struct {
	Name        string
	Addr        netip.AddrPort
	Upstreams   []netip.AddrPort // at least one
	LeastConn   bool             // false: round-robin
	Tries       int              // connect attempts in total across upstreams; 0 = len(Upstreams)
	MaxSessions int              // 0 = unlimited
	// FDs are inherited listening sockets to adopt instead of binding anew
	// (zero-downtime upgrade): FDs[i] goes to loop i; loops beyond len(FDs)
	// bind their own SO_REUSEPORT socket to the same address. The server
	// owns them from AddListener on.
	FDs []int
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.Loops < 0 || cfg.BufferSize < 0 || cfg.IdleTimeout < 0 || cfg.FinTimeout < 0 || cfg.Backlog < 0 || cfg.MaxSessions < 0 {
		return cfg, errors.New("relay: negative value in Config")
	}
	if cfg.Loops == 0 {
		cfg.Loops = runtime.NumCPU()
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
		cfg.Backlog = 4096
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
	if len(lc.Upstreams) == 0 {
		return fmt.Errorf("relay: listener %q: no upstreams", lc.Name)
	}
	for _, u := range lc.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return fmt.Errorf("relay: listener %q: invalid upstream %v", lc.Name, u)
		}
	}
	if lc.Tries < 0 || lc.MaxSessions < 0 {
		return fmt.Errorf("relay: listener %q: negative tries or max sessions", lc.Name)
	}
	return nil
}
