//go:build linux

// Package connector is stage 1 of relayd: a small pool of event loops that
// open upstream TCP connections without blocking and hand the connected
// sockets to the relay loops (stage 2).
//
// # Use
//
//	pool, err := connector.New(connector.Config{NoDelay: true}) // 2 workers × 32 slots, adaptive pacing
//	ups, err := pool.SetUpstreams("web", []connector.UpstreamConfig{{Addr: a}, {Addr: b}})
//	...
//	req := &connector.Request{Upstreams: ups, Handler: h, Cookie: gen} // or Addrs: for a client-named target
//	if err := pool.Submit(req); err != nil { // ErrQueueFull, ErrUpstreamsDown: reject the client now
//		...
//	}
//	// later, on a worker goroutine: h.Connected(req) with req.FD or req.Err
//	...
//	req.Cancel() // the client went away; Connected is still called once
//	pool.Close() // completes what is left with ErrClosed and waits for the workers
//
// A request waits in the queue of the upstream its attempt is for, until a
// worker has a free slot (MaxInflight per worker) and the upstream has room
// under its own limit; then the worker connects: socket(SOCK_NONBLOCK|
// SOCK_CLOEXEC) → connect → EINPROGRESS → write interest in its epoll set
// → on the event, SO_ERROR. Success: the fd leaves the poller, gets
// TCP_NODELAY if configured, and goes to the handler. Failure (refused,
// timeout from the worker's timing wheel, unreachable, EADDRNOTAVAIL,
// anything else): the socket is closed, the failure counted by Class, and
// the next candidate queued while r.Tries allows (Upstreams[0],
// Upstreams[1], … wrapping around; a candidate marked down is skipped
// without using a try). The timeout of an attempt counts from when it
// asked for a slot, so a request queued behind a slow upstream ends on
// time. Requests by Addrs (targets named by SOCKS5 / HTTP CONNECT clients)
// share one pseudo-upstream without a limit or health: only the global
// slots pace them.
//
// # Isolation
//
// An upstream is one address of one listener (UpstreamKey). The workers'
// slots go round-robin over the upstreams that have a queued request and
// room under their limit (sched.go), so an upstream that hangs can hold at
// most its own limit of slots, its queue is its own (UpstreamQueue), and
// the others keep their latency: HAProxy's per-server maxconn and queue.
//
// # Health
//
// Passive: FailAfter consecutive attempts that fail for a reason of the
// upstream's (refused, timeout, unreachable — not this host's EMFILE or
// EADDRNOTAVAIL), with no connect succeeding for a whole connect timeout,
// mark it down for Backoff. (An upstream that still completes connects is
// overloaded, not dead: dropped SYNs between successes are the pacer's
// signal, and marking it down would turn a storm into an outage.) Requests skip it; what waited
// for it moves to its next candidate; Submit with every candidate down
// returns ErrUpstreamsDown at once (the relay's close reason
// upstreams_down) instead of queueing behind connects known to time out.
// When the back-off is over one trial request is let through (and only
// one: with nothing queued or in flight for it); success brings the
// upstream up, failure doubles the back-off up to BackoffMax. Active
// (CheckConfig, HAProxy's check/inter/rise/fall): a TCP connect every
// Interval, run by one worker on its poller and wheel like any connect, in
// a slot of its own — no goroutine per upstream, no session slot used.
// Fall failed checks take the upstream down, Rise passed checks bring it
// back (with a check, only the check does). Every change is reported once
// through Config.OnHealth and counted (UpstreamStats.Transitions).
//
// # Admin state
//
// Beside its health, each upstream has an operator's setting
// (SetAdminState): Enabled, Draining (no new request is routed to it;
// those in flight or queued finish) or Disabled (the same, and its active
// checks pause). routeLocked skips an upstream that is not Enabled exactly
// as one that is down, so a listener whose upstreams are all drained fails
// fast with ErrUpstreamsDown.
//
// # Adaptive pacing
//
// With Pacing "adaptive" (the default) each upstream has two limits that a
// loss-based controller moves (pacing.go): a window — connects in flight,
// AIMD with slow start, TCP Reno's window over connect attempts — and,
// once a SYN has been lost, a rate — connect starts per second through a
// token bucket, in the spirit of BBR's pacing at the measured delivery
// rate. Both are exported per upstream (relayd_upstream_limit,
// relayd_upstream_rate_limit).
//
//   - The window starts at 8 (pacerInitial), at most UpstreamMaxInflight. A
//     connect that succeeds while demand is at the limit (requests queued,
//     or the window in use) raises it: +1 below ssthresh (slow start), +1/
//     window above. Without demand it stays: an upstream that needs two
//     connects at a time must not drift to the ceiling and storm on the
//     next burst.
//   - The signals are a refusal, a timeout, and a lost SYN: an attempt still
//     unanswered (no peer, by getpeername) after lateAfter = max(2 ms,
//     3 × the least connect time of the last 10–20 s), doubled for each
//     SYN of the same request already re-sent and capped at the timeout.
//     The floor was 25 ms: in a storm a lost attempt holds a window slot
//     until it is found, and at 5,000 connects/s into backlog 8 the
//     slots held by lost SYNs were most of the window, so sessions queued
//     behind them (p50 0.5–0.8 s; 0.26–0.49 s at 2 ms, same run). The
//     doubling keeps a short floor safe: a path that became slower than
//     it would otherwise have every attempt given up and re-sent until
//     the deadline; with it a request outgrows the new round trip in a
//     few re-sends, as TCP's SYN timer backs off. On one, the window halves (pacerBeta) and the rate is set to
//     0.7 (rateBeta) of the best success rate of the last ten 100 ms windows
//     (what the upstream demonstrably absorbed; the best, not the latest,
//     because the windows of an overload deliver less than it can take);
//     the first cut starts from the pace connects were started at instead,
//     if higher, since early successes measure the demand, not the
//     upstream. A paced upstream's rate falls by at most 0.7 per cut, to no
//     less than 10/s (rateMin). One cut per episode: only attempts started
//     after the last cut, and at most one per 100 ms, as TCP cuts at most
//     once per round trip — on a host busy with the storm itself, late
//     answers come in clusters. Lost SYNs cut only when they are 10 %
//     (lossThresh) of the starts of the last two windows, as BBRv2 keeps
//     a loss threshold: an occasional overflow costs a 2 ms re-send, less
//     than pacing below what the upstream takes.
//   - A lost SYN is not waited out: the attempt is closed and re-sent from
//     the front of the upstream's queue when the limits allow, within its
//     original deadline. The kernel would retransmit after 1 s, 3 s, 7 s
//     (the initial RTO); the ≥ 1 s mode of a storm's connect latency is
//     exactly that, and lateAfter finds the loss 500× sooner on a short path.
//   - Growth: a paced upstream's rate ×2 (rateGain) per 100 ms of demand
//     without a cut — a loss costs one re-sent SYN and a cut, a pace below
//     what the upstream takes costs every queued session time. After 5 s
//     (pacerCalmSpan) without a cut, or once the pace has not been what
//     limits the starts for a second, pacing is off and ssthresh is back at
//     the ceiling, so an upstream that got faster (a bigger backlog, more
//     servers behind the address) is found by slow start within a few
//     rounds; loadtest/connectbench's growth scenario shows it.
//
// Why a rate and not only a window: a connect leaves the window when the
// upstream's kernel completes the handshake, which is long before its
// application accepts the connection. The listen queue between the two is
// what overflows (backlog 8 holds 9), and on a short path (loopback, the same
// rack) handshakes complete in microseconds, so even a window of 1 lets
// thousands of connections a second into a queue the application drains
// at hundreds: only the pace of new connections bounds it.
//
// Why loss and not latency: TCP Vegas, Netflix's Gradient2 and Envoy's
// adaptive concurrency filter steer by the ratio of a latency to its
// minimum, which measures a queue that grows with load. A connect has no
// such queue: the upstream's kernel answers the SYN with a SYN-ACK
// straight from softirq until its listen queue is full, and then drops it.
// The connect latency stays at the path's round trip right up to the loss
// and then jumps to the retransmission timeout; there is no gradient to
// follow, only the loss. A latency controller would also mistake a busy
// relay host (late worker wake-ups) for a slow upstream; here a false
// "late" costs one cut per episode, which the growth undoes in a few
// hundred milliseconds.
//
// With Pacing "fixed", each upstream has UpstreamMaxInflight slots and no
// controller (lost SYNs are still counted, not re-sent).
//
// # Why a separate, small pool
//
// Connecting is a different job from relaying: it is slow (a round trip, or
// a timeout), it fails in ways that need counting and failover, and the
// kernel does it for us once the SYN is out. Running it on the relay loops
// would mix seconds-long timeouts and failover bookkeeping into loops that
// must stay latency-bound. Running it with more parallelism does not make it
// faster: the field report relayd starts from (seed 002) moved its connect
// stage from 10,000 blocking threads to 2 threads with multiplexed
// non-blocking connects, because more parallel connects produced more
// failures (SYN back-off, accept-queue overflow upstream, exhausted
// ephemeral ports). Hence the defaults — 2 workers, 32 connects in flight
// per worker — and the bounded queues in front: excess demand waits in line
// or is rejected at once (ErrQueueFull), it never turns into a SYN storm.
// The per-upstream limit and its controller are the same idea one level
// down: what an upstream can take is found by measuring it, not by a
// constant tuned by hand.
//
// Why not gnet's EventLoop.Register or net.Dial: Register is a blocking
// net.Dial in a pool goroutine with no timeout, and any net.Dial costs a
// goroutine, a runtime-netpoller registration and a *net.TCPConn per
// connect, only for relayd to extract the fd again. Here a connect costs a
// slot in a fixed array and one poller registration, and the connector
// itself allocates nothing (BenchmarkConnect shows 0 allocs/op).
//
// # Concurrency and ownership
//
//   - Submit, Cancel, SetUpstreams, Stats, UpstreamStats and Close are safe
//     from any goroutine. Submit never blocks and never calls the handler.
//     It wakes a worker (one eventfd write) only when no worker with a free
//     slot would look at the queues by itself; a busy worker pulls the next
//     request whenever a slot frees.
//   - The caller owns Request. Between Submit and Connected it must not
//     write to it; the connector touches r and r.FD only until it calls
//     Connected, then never again — ownership of both passes to the handler
//     at that call. The handler runs on a worker goroutine and must not
//     block. A Request may be reused (or overwritten with a fresh literal)
//     after Connected.
//   - The handler must not call Close (Close waits for the worker that is
//     running the handler). It may call Submit.
//   - Cancel races safely with completion: whichever wins, Connected is
//     called once; a socket that connected after Cancel is closed by the
//     connector and the result is ErrCanceled. Cancel must not race with a
//     later Submit of the same Request.
//   - Each worker owns its poller, wheel, slots and fd table outright; other
//     goroutines reach it only through the scheduler (the queues, counts,
//     pacers and health, under one pool mutex held for pointer moves and a
//     few arithmetic steps) and posted tasks. A closed fd's number can be reused by the kernel at once, so a
//     worker closes the sockets it registered only after the event batch it
//     is processing (see worker.closeLater) and always removes them from
//     the poller first: a late event is never applied to a new attempt.
//
// # Non-goals
//
// Name resolution (Addrs are resolved addresses), choosing the first
// upstream (the caller rotates and weights its list; the connector only
// skips down ones), per-destination state for client-named targets, TLS or
// proxy protocols, and retries beyond Tries. Linux-only (build tag linux): the socket layer uses
// SOCK_NONBLOCK|SOCK_CLOEXEC in one call and epoll semantics for Delete.
package connector
