// Package socks5 is the server side of a SOCKS5 handshake (RFC 1928) with
// username/password authentication (RFC 1929), as an incremental state
// machine for a non-blocking event loop.
//
// Usage, in the loop, each time bytes arrive in the session's bounded buffer:
//
//	n, out, err := srv.Feed(buf, wbuf[:0])
//	write(out)                  // replies to send now, also on error (they carry the failure code)
//	buf = buf[n:]               // consumed bytes; the rest stays
//	switch {
//	case errors.Is(err, socks5.ErrNeedMore): // wait for more bytes (the caller owns the timeout)
//	case err != nil:                          // write out, then close; count err as the reason
//	default:                                  // srv.Request() is ready: check policy, resolve, dial,
//	                                          // then send AppendReply(.., Succeeded, bound) or a failure;
//	                                          // buf (anything after the request) is payload to forward.
//	}
//
// Feed handles greeting → method selection (0x02 user/pass when a Verifier is
// configured, otherwise 0x00 no-auth; 0xFF if the client offers neither) →
// RFC 1929 sub-negotiation → request. Only CONNECT is served; BIND and UDP
// ASSOCIATE (and unknown commands) get reply 0x07 after the whole request has
// been read, so closing does not reset the reply away. Domain names must pass
// policy.ValidHostname (a name that is an IP literal becomes Addr); a bad name
// gets 0x04, an unknown address type 0x08, a nonzero reserved byte 0x01. A
// wrong protocol version is closed without a reply, as the RFC has none.
//
// Feed never blocks, keeps no reference to b, allocates only the Host string
// of a domain request, and accepts pipelined clients (greeting, auth and
// request in one segment).
//
// Non-goals: dialing, resolving, policy, timeouts, counting auth failures
// (the caller does those; DialReply maps a dial error to a reply code).
//
// Concurrency: a Server is one session's state, owned by that session's loop.
package socks5
