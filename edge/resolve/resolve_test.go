package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/edge/policy"
	"go.uber.org/goleak"
)

type result struct {
	addrs []netip.Addr
	err   error
}

func TestResolverPolicy(t *testing.T) {
	defer goleak.VerifyNone(t)
	names := map[string][]netip.Addr{
		"loopback.test": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")},
		"mixed.test":    {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:1.1.1.1")},
		"empty.test":    {},
	}
	r, err := New(Config{Workers: 2, Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		a, ok := names[host]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return append([]netip.Addr(nil), a...), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := policy.New(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	resolve := func(host string) result {
		ch := make(chan result, 1)
		if err := r.Resolve(host, func(a []netip.Addr, err error) { ch <- result{a, err} }); err != nil {
			return result{nil, err}
		}
		select {
		case res := <-ch:
			return res
		case <-time.After(30 * time.Second):
			t.Fatal("resolver never called back")
			return result{}
		}
	}

	res := resolve("loopback.test")
	if res.err != nil || len(res.addrs) != 2 {
		t.Fatalf("loopback.test: %+v", res)
	}
	if _, rule, ok := p.Pick(res.addrs, 80); ok || rule != policy.RuleLoopback {
		t.Fatalf("name resolving to loopback allowed: %q", rule)
	}
	res = resolve("mixed.test")
	got, rule, ok := p.Pick(res.addrs, 443)
	if !ok || got != netip.MustParseAddrPort("1.1.1.1:443") || rule != policy.RuleDefault {
		t.Fatalf("mixed.test: %v %q %v (addrs %v)", got, rule, ok, res.addrs)
	}
	if res := resolve("empty.test"); !errors.Is(res.err, ErrNoAddresses) {
		t.Fatalf("empty: %v", res.err)
	}
	var dnsErr *net.DNSError
	if res := resolve("nx.test"); !errors.As(res.err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("nx: %v", res.err)
	}
	for _, bad := range []string{"", "a\r\nb", "127.0.0.1", string(make([]byte, 10000))} {
		if err := r.Resolve(bad, func([]netip.Addr, error) { t.Error("callback for bad name") }); !errors.Is(err, ErrBadHost) {
			t.Fatalf("Resolve(%q): %v", bad, err)
		}
	}
}

func TestResolverTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	r, err := New(Config{Workers: 1, Timeout: 50 * time.Millisecond,
		Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			<-ctx.Done() // a DNS server that never answers
			return nil, ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ch := make(chan error, 1)
	if err := r.Resolve("slow.test", func(_ []netip.Addr, err error) { ch <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ch:
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("timeout not enforced")
	}
}

func TestResolverQueueFullAndClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	r, err := New(Config{Workers: 1, Queue: 2, Timeout: time.Minute,
		Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			started <- struct{}{}
			select {
			case <-release:
				return []netip.Addr{netip.MustParseAddr("1.1.1.1")}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	results := map[string][]error{}
	cb := func(host string) func([]netip.Addr, error) {
		return func(_ []netip.Addr, err error) {
			mu.Lock()
			results[host] = append(results[host], err)
			mu.Unlock()
		}
	}
	if err := r.Resolve("a.test", cb("a.test")); err != nil {
		t.Fatal(err)
	}
	<-started // the only worker is now busy with a.test
	for _, h := range []string{"b.test", "c.test"} {
		if err := r.Resolve(h, cb(h)); err != nil {
			t.Fatalf("queue slot for %s: %v", h, err)
		}
	}
	if err := r.Resolve("d.test", cb("d.test")); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("4th request: %v, want ErrQueueFull", err)
	}
	if p := r.Pending(); p != 2 {
		t.Fatalf("pending %d", p)
	}
	close(release)
	<-started // b.test started, c.test still queued or started next
	r.Close()
	r.Close() // twice is fine
	if err := r.Resolve("e.test", cb("e.test")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(results["a.test"]) != 1 || results["a.test"][0] != nil {
		t.Fatalf("a.test: %v", results["a.test"])
	}
	for _, h := range []string{"b.test", "c.test"} {
		// b may have finished (release is closed) or been cancelled; c may
		// have run or been failed by Close; each gets exactly one callback.
		if len(results[h]) != 1 {
			t.Fatalf("%s callbacks: %v", h, results[h])
		}
	}
	if len(results["d.test"]) != 0 || len(results["e.test"]) != 0 {
		t.Fatalf("callbacks for refused requests: %v", results)
	}
}
