// Package relay is relayd's second stage: a fixed set of event loops that own
// the established sessions and move bytes both ways.
//
// Each loop is our own loop on gnet's public poller (internal/evloop): gnet's
// and cloudwego/netpoll's connection types can neither pause reading a
// connection nor half-close it (see shared DESIGN.md), and a relay needs both.
//
// Backpressure is interest management. A side is registered for reading only
// while its direction has nothing pending, and for writing only while bytes
// wait for it. Data is read into the loop's one scratch buffer and written on
// at once; only what the destination refuses is copied into a buffer from a
// pool (Config.BufferSize), which goes back as soon as it drains. So a slow
// peer costs at most one buffer per direction — 2×BufferSize per session —
// and TCP flow control stops the fast peer; an idle session holds none.
//
// Half-close and reset are forwarded: EOF on one side is flushed and becomes
// shutdown(SHUT_WR) on the other; the session ends when both directions are
// done, bounded by FinTimeout. A reset or error on one side closes the other
// with SO_LINGER{1,0}, so its peer sees a reset too, not a clean end.
//
// Sessions are stamped with a generation. The connector's result for a
// session carries it back, and fds are closed only after the current event
// round (loop.deferClose), so a late event or a late connect result can never
// act on a reused fd number or a different session.
//
// Accept: by default every loop owns an SO_REUSEPORT socket per listen
// address and the kernel spreads connections; with Reuseport false, loop 0
// accepts and hands sessions out round-robin. EMFILE and kin pause the
// listener with exponential back-off (5 ms to 1 s) instead of spinning.
//
// Edge listeners (handshake.go): before a session connects it may read a
// PROXY protocol header (trusted peers only), apply the source ACL and
// per-source limits to the real client address, and parse a SOCKS5 or HTTP
// CONNECT request — all inside the loop, on the bytes buffered for the
// upstream, bounded by the listener's handshake timeout. Client-chosen
// targets pass the destination policy; names are resolved off the loop and
// the answer is posted back, guarded by the session generation. Forward
// sessions skip all of it at the cost of one comparison.
//
// Concurrency: a loop's sessions, fds, wheel and scratch buffer are touched
// only by that loop's goroutine. Other goroutines reach a loop only through
// its task queue (evloop.Loop.PostFunc). Server methods are safe from any
// goroutine. Stats are atomics written by one loop each.
//
// Non-goals: TLS, protocol inspection beyond the edge handshakes, splice(2)
// zero-copy (not offered by the poller; a candidate for later), UDP.
package relay
