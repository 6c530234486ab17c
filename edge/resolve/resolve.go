package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/relayd/relayd/edge/policy"
)

var (
	// ErrQueueFull means the resolver's queue is full: refuse the request now.
	ErrQueueFull = errors.New("resolve: queue full")
	// ErrClosed means the resolver was closed.
	ErrClosed = errors.New("resolve: resolver closed")
	// ErrNoAddresses means a name resolved to nothing.
	ErrNoAddresses = errors.New("resolve: name has no addresses")
	// ErrTimeout means a lookup exceeded Config.Timeout. It
	// also wraps context.DeadlineExceeded, so socks5.DialReply and
	// httpconnect.DialStatus map it to their timeout replies.
	ErrTimeout = errors.New("resolve: timeout")
	// ErrBadHost means the name failed policy.ValidHostname.
	ErrBadHost = errors.New("resolve: invalid host name")
)

// LookupFunc resolves host to addresses; net.Resolver.LookupNetIP with
// network "ip" has this shape.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// Config configures a Resolver. Zero values are documented per field.
type Config struct {
	Workers int           // lookup goroutines; 0 means 4
	Queue   int           // pending lookups beyond those running; 0 means 1024
	Timeout time.Duration // per lookup; 0 means 5s
	Lookup  LookupFunc    // nil means net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

type job struct {
	host string
	done func([]netip.Addr, error)
}

// Resolver resolves names off the event loops with bounded concurrency: a
// fixed pool of workers takes jobs from a bounded queue, so a flood of
// requests for slow names costs at most Workers goroutines and Queue slots,
// and excess requests fail fast with ErrQueueFull.
type Resolver struct {
	cfg    Config
	jobs   chan job
	ctx    context.Context // cancelled by Close; workers derive lookup contexts from it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.RWMutex
	closed bool // mu guards closed and sends on jobs (so Close can close it)
}

// New starts the workers.
func New(cfg Config) (*Resolver, error) {
	if cfg.Workers < 0 || cfg.Queue < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("policy: invalid resolver config %+v", cfg)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Queue == 0 {
		cfg.Queue = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Lookup == nil {
		cfg.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	r := &Resolver{cfg: cfg, jobs: make(chan job, cfg.Queue)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go r.worker()
	}
	return r, nil
}

// Resolve queues a lookup of host. done is called exactly once, on a
// resolver goroutine (never inside Resolve), with every address the name
// has (IPv4-mapped ones unmapped, order kept) or an error; it must not block
// and should hand the result to the session's loop (e.g. via its task
// queue); it must not call Close (Close waits for the worker running it).
// Resolve itself never blocks: a full queue returns ErrQueueFull,
// and then done is not called.
func (r *Resolver) Resolve(host string, done func([]netip.Addr, error)) error {
	if !policy.ValidHostname([]byte(host)) {
		return fmt.Errorf("%w: %q", ErrBadHost, host)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ErrClosed
	}
	select {
	case r.jobs <- job{host, done}:
		return nil
	default:
		return ErrQueueFull
	}
}

// Pending returns the number of queued lookups not yet started.
func (r *Resolver) Pending() int { return len(r.jobs) }

// Close cancels lookups in flight, fails queued ones with ErrClosed (their
// done is still called) and waits for the workers to exit. Safe to call twice.
func (r *Resolver) Close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		r.cancel()
		close(r.jobs)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *Resolver) worker() {
	defer r.wg.Done()
	for j := range r.jobs {
		if r.ctx.Err() != nil {
			j.done(nil, ErrClosed)
			continue
		}
		j.done(r.lookup(j.host))
	}
}

func (r *Resolver) lookup(host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	addrs, err := r.cfg.Lookup(ctx, host)
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case r.ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %s: %w", ErrClosed, host, err)
		case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &dnsErr) && dnsErr.IsTimeout) || ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %s: %w", ErrTimeout, host, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("policy: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoAddresses, host)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}
