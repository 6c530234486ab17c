//go:build linux

// Package connector is stage 1 of relayd: a small pool of event loops that
// open upstream TCP connections without blocking and hand the connected
// sockets to the relay loops (stage 2).
//
// # Use
//
//	pool, err := connector.New(connector.Config{NoDelay: true}) // 2 workers, 32 in flight each
//	...
//	req := &connector.Request{Addrs: upstreams, Handler: h, Cookie: gen}
//	if err := pool.Submit(req); err != nil { // ErrQueueFull: reject the client now
//		...
//	}
//	// later, on a worker goroutine: h.Connected(req) with req.FD or req.Err
//	...
//	req.Cancel() // the client went away; Connected is still called once
//	pool.Close() // completes what is left with ErrClosed and waits for the workers
//
// A worker takes a queued request into one of its MaxInflight slots and
// connects: socket(SOCK_NONBLOCK|SOCK_CLOEXEC) → connect → EINPROGRESS →
// write interest in its gnet poller → on the event, SO_ERROR. Success:
// the fd leaves the poller, gets TCP_NODELAY if configured, and goes to the
// handler. Failure (refused, timeout from the worker's timing wheel,
// unreachable, EADDRNOTAVAIL, anything else): the socket is closed, the
// failure counted by Class, and the next address tried while r.Tries allows
// (Addrs[0], Addrs[1], … wrapping around). Immediate errors from connect()
// take the same path.
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
// per worker — and the bounded FIFO in front: excess demand waits in line or
// is rejected at once (ErrQueueFull), it never turns into a SYN storm.
//
// Why not gnet's EventLoop.Register or net.Dial: Register is a blocking
// net.Dial in a pool goroutine with no timeout, and any net.Dial costs a
// goroutine, a runtime-netpoller registration and a *net.TCPConn per
// connect, only for relayd to extract the fd again. Here a connect costs a
// slot in a fixed array and one poller registration, and the connector
// itself allocates nothing (BenchmarkConnect shows 0 allocs/op); the
// wake-up a Submit posts to an idle worker costs one node in gnet's task
// queue.
//
// # Concurrency and ownership
//
//   - Submit, Cancel, Stats and Close are safe from any goroutine. Submit
//     never blocks and never calls the handler. It wakes a worker (one
//     eventfd write) only when the worker would not look at its FIFO by
//     itself; a busy worker pulls the next request whenever a slot frees.
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
//     goroutines reach it only through a small mutex-guarded FIFO and posted
//     tasks. A closed fd's number can be reused by the kernel at once, so a
//     worker closes the sockets it registered only after the event batch it
//     is processing (see worker.closeLater) and always removes them from
//     the poller first: a late event is never applied to a new attempt.
//
// # Non-goals
//
// Name resolution (Addrs are resolved addresses), balancing across
// upstreams (the caller rotates Addrs), TLS or proxy protocols, and
// retries beyond Tries. Linux-only (build tag linux): the socket layer uses
// SOCK_NONBLOCK|SOCK_CLOEXEC in one call and epoll semantics for Delete.
package connector
