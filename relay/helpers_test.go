//go:build linux

package relay_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/testnet"
	"github.com/relayd/relayd/relay"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchPeerEnv) != "" {
		runBenchPeer() // the child of BenchmarkForwardSession; exits
	}
	// The Go runtime opens its own epoll fd and eventfd on first network
	// use; open them now so that fd counts taken in tests are comparable
	// (also in a child process that runs one test).
	if ln, err := net.Listen("tcp4", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goleak.VerifyTestMain(m)
}

type fixture struct {
	srv  *relay.Server
	pool *connector.Pool
	addr string
}

// startRelay runs a relay with one listener to ups. mod may adjust the
// configs. Cleanup closes everything and checks that no fd leaked.
func startRelay(t testing.TB, ups []string, mod func(*relay.Config, *connector.Config, *relay.ListenerConfig)) *fixture {
	t.Helper()
	fdsBefore := countFDs(t)
	ccfg := connector.Config{Workers: 2, MaxInflight: 32, Queue: 4096, ConnectTimeout: 5 * time.Second, NoDelay: true}
	rcfg := relay.Config{Loops: 2, BufferSize: 32 << 10, NoDelay: true, Reuseport: true}
	lc := relay.ListenerConfig{Name: "test", Addr: netip.MustParseAddrPort("127.0.0.1:0")}
	for _, u := range ups {
		lc.Upstreams = append(lc.Upstreams, netip.MustParseAddrPort(u))
	}
	if mod != nil {
		mod(&rcfg, &ccfg, &lc)
	}
	pool, err := connector.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.Dialer = pool
	srv, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.AddListener(lc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select { // a loop that died during the test (its poller failed) fails it
		case err := <-srv.Dead():
			t.Errorf("relay loop died: %v", err)
		default:
		}
		_ = srv.Close()
		_ = pool.Close()
		// Counter consistency after every relay test: every accepted client
		// was closed under exactly one reason, per listener too, and
		// nothing is left active or held.
		st := srv.Stats()
		if st.Active != 0 || st.BufsHeld != 0 || st.Accepted != st.ClosedTotal() {
			t.Errorf("after Close: %d sessions active, %d buffers held, %d accepted but %d closed (%v)", st.Active, st.BufsHeld, st.Accepted, st.ClosedTotal(), st.Closed)
		}
		for name, ls := range st.Listeners {
			var closed uint64
			for _, v := range ls.Closed {
				closed += v
			}
			if ls.Active != 0 || ls.Accepted != closed {
				t.Errorf("listener %s after Close: %d active, %d accepted, %d closed", name, ls.Active, ls.Accepted, closed)
			}
		}
		waitFDs(t, fdsBefore)
	})
	return &fixture{srv: srv, pool: pool, addr: addr.String()}
}

func countFDs(t testing.TB) int { return testnet.CountFDs(t) }

// waitFDs waits until the process is back to want open fds (closes by peers
// and by the test's own goroutines finish asynchronously) — bounded.
func waitFDs(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := countFDs(t)
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command("sh", "-c", fmt.Sprintf("ls -l /proc/%d/fd/ | awk '{print $NF}' | sed 's/[0-9]*//g' | sort | uniq -c", os.Getpid())).CombinedOutput()
			t.Errorf("fd leak: %d open, %d before\n%s", n, want, out)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// server is a loopback TCP server running handle per connection; Close
// waits for every handler.
type server struct{ *testnet.Server }

func newServer(t testing.TB, handle func(c *net.TCPConn)) *server {
	t.Helper()
	return &server{testnet.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) { handle(c.(*net.TCPConn)) })}
}

func (s *server) Addr() string { return s.Server.Addr().String() }

func echo(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// randReader yields n deterministic pseudo-random bytes.
func randReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(&prng{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, n)
}

type prng struct{ r *rand.Rand }

func (p *prng) Read(b []byte) (int, error) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := p.r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(p.r.Uint32())
	}
	return len(b), nil
}

func sum(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, n, err
}

func mustSum(seed uint64, n int64) [32]byte {
	s, _, _ := sum(randReader(seed, n))
	return s
}
