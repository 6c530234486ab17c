// Package httpconnect parses the request head of an HTTP/1.x CONNECT proxy
// request ("CONNECT host:port HTTP/1.1") incrementally, for a non-blocking
// event loop, and builds the proxy's replies.
//
// Usage, each time bytes arrive in the session's bounded buffer:
//
//	req, n, err := httpconnect.Parse(buf, cfg)
//	switch {
//	case errors.Is(err, httpconnect.ErrNeedMore): // wait (the caller owns handshake_timeout)
//	case err != nil: // write httpconnect.AppendError(nil, err), then close; count err
//	default:
//		// req.Host (a name to resolve off the loop) or req.Addr (an IP);
//		// check policy, dial, then write httpconnect.Established (or
//		// AppendResponse(.., 403/502/504)). buf[n:] is tunnel payload the
//		// client sent early: forward it, never drop it.
//	}
//
// Parse is stateless: give it the whole buffer each time (it rescans at
// most Config.MaxHead bytes, 8 KiB by default). It reports an error as early
// as the bytes allow (garbage or a non-CONNECT method as soon as the method
// is seen, a bad request line as soon as it is complete) and never says
// ErrNeedMore for a buffer that already holds MaxHead bytes (→ 431).
//
// Strictness: CRLF line endings only (a bare CR or LF is 400), no obs-fold,
// no whitespace before a header's colon, HTTP/1.0 or HTTP/1.1 only (other
// HTTP/x.y is 505), authority-form target only: host:port, [IPv6]:port, or an
// IPv4 literal; names must pass policy.ValidHostname (so no CR/LF/NUL,
// percent-encoding or zones); the port is 1-65535 in plain decimal. A CONNECT
// with Transfer-Encoding or a non-zero Content-Length is 400: the bytes after
// the head are the tunnel, and a body would make client and proxy disagree
// about where it starts. Header names are case-insensitive.
//
// With Config.Verify set, "Proxy-Authorization: Basic <base64 user:pass>" is
// required (missing → ErrAuthRequired, wrong → ErrAuthFailed, both 407 with
// Proxy-Authenticate: Basic realm="relayd"); the check is the constant-time
// auth.Verifier shared with SOCKS5. Without it the header is ignored.
//
// Parse allocates only the Host string of a name target. Error replies carry
// "Connection: close"; the caller should shutdown(SHUT_WR) after writing one
// and discard input briefly before closing, or unread request bytes make the
// kernel reset the connection and the client may never see the reply.
//
// Non-goals: plain forward proxying (GET http://...), HTTP/2 CONNECT,
// keep-alive after a failed request, timeouts, dialing.
//
// Concurrency: pure functions, safe anywhere.
package httpconnect
