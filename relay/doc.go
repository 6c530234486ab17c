//go:build linux

// Package relay is relayd's second stage: a fixed set of event loops that own
// the established sessions and move bytes both ways.
//
// Each loop is our own epoll loop (internal/evloop): gnet's and
// cloudwego/netpoll's connection types can neither pause reading a
// connection nor half-close it (see shared DESIGN.md), and a relay needs both.
//
// Backpressure is interest management. A side is registered for reading only
// while its direction has nothing pending, and for writing only while bytes
// wait for it. Data is read into the loop's one scratch buffer and written on
// at once; only what the destination refuses is copied into a buffer from a
// pool (Config.BufferSize), which goes back as soon as it drains. So a slow
// peer costs at most one buffer per direction — 2×BufferSize per session —
// and TCP flow control stops the fast peer. The invariant behind it (session.go,
// type dir): in every state a direction holds a buffer if and only if bytes
// are pending, so an idle session — edge sessions after their handshake
// included — holds none. Handshakes keep only their unparsed bytes, in a
// slice that grows to the protocol's bound (edge_handshake.go).
//
// The path of one session: loop.accept → Server.admit → session.start →
// (edge: startEdge … route) → Dialer.Submit; the connector calls
// session.Connected on its own goroutine, which posts loop.connectedTask →
// session.connected → enterRelaying; then onEvent → read / flush / update
// until close.
//
// Half-close and reset are forwarded: EOF on one side is flushed and becomes
// shutdown(SHUT_WR) on the other; the session ends when both directions are
// done, bounded by FinTimeout. A read error (the peer reset) closes the other
// side with SO_LINGER{1,0}, so its peer sees a reset too, not a clean end;
// that discards what was still queued toward it. A write error only ends the
// direction toward the peer that broke off: its source is drained and
// dropped, and the reverse direction still delivers what arrived cleanly
// (an HTTP response sent before the upstream closed) before a clean FIN.
//
// fds are closed only after the current event round (loop.deferClose) and
// l.fds is cleared at close, so a late event for a closed fd finds nothing and
// can never act on a socket that reuses the number. Sessions are stamped with
// a generation, which guards the results that arrive as tasks (a connect, a
// resolver answer) against a session that ended meanwhile.
//
// Accept: by default every loop owns an SO_REUSEPORT socket per listen
// address and the kernel spreads connections; with Reuseport false, loop 0
// accepts and hands sessions out round-robin. EMFILE and kin pause the
// listener with exponential back-off (5 ms to 1 s) instead of spinning.
//
// Edge listeners (edge_*.go): before a session connects it may read a
// PROXY protocol header (trusted peers only), apply the source ACL and
// per-source limits to the real client address (edge_admit.go), and parse a
// SOCKS5 or HTTP CONNECT request (edge_handshake.go) — all inside the loop,
// bounded by the listener's handshake timeout; routing, policy and the
// connect of a client-named target are in edge_route.go. Client-chosen
// targets pass the destination policy; names are resolved off the loop and
// the answer is posted back, guarded by the session generation. Forward
// sessions skip all of it at the cost of one comparison.
//
// Concurrency: a loop's sessions, fds, wheel and scratch buffer are touched
// only by that loop's goroutine. Other goroutines reach a loop only through
// its task queue (evloop.Loop.PostFunc). Server methods are safe from any
// goroutine. Stats are atomics written by one loop each.
//
// Linux-only (build tag linux): accept4, epoll and Linux socket options.
//
// Non-goals: TLS, protocol inspection beyond the edge handshakes, splice(2)
// zero-copy (not offered by the poller; a candidate for later), UDP.
package relay
