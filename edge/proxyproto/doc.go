// Package proxyproto parses and builds HAProxy PROXY protocol headers,
// versions 1 (text) and 2 (binary), as specified in haproxy's
// doc/proxy-protocol.txt.
//
// The parser is incremental and made for a non-blocking event loop: the
// caller hands Parse the bytes received so far (from its own bounded buffer)
// and gets back one of
//
//   - ErrNeedMore: the bytes are a valid prefix of a header; read more and
//     call again with the longer buffer (stalls are the caller's business:
//     it owns the handshake timeout);
//   - a Header and n, the header's length: b[n:] is the start of the
//     client's payload and must be forwarded, never dropped;
//   - a precise error (errors.Is-testable sentinel): close the connection.
//     The protocol has no error reply.
//
// A caller that accepts v2 needs a buffer of at least MaxLen bytes; one that
// accepts only v1 needs MaxV1Len. Parse never reads beyond the header, never
// allocates for v1 TCP4/UNKNOWN or for v2, and keeps no state between calls.
//
// Why not github.com/pires/go-proxyproto: its Read takes a *bufio.Reader on a
// blocking net.Conn (one goroutine parked per half-sent header); an event
// loop needs "here are the bytes so far, is it complete?". That library is
// used in this package's tests as an independent oracle for the same spec
// vectors.
//
// Strictness, as the spec asks of receivers ("no guessing"): v1 is at most
// 107 bytes including CRLF, single spaces, TCP4 with dotted-quad addresses
// without leading zeros, TCP6 with IPv6 addresses without zones, decimal
// ports 0-65535 without leading zeros; UNKNOWN ignores the rest of the line.
// v2 needs the 12-byte signature, version 2, command LOCAL or PROXY, for
// PROXY a family INET, INET6 or UNIX with STREAM transport (DGRAM is refused:
// relayd relays TCP; UNSPEC is refused, as HAProxy refuses it), a
// length that covers the address block and at most MaxV2Payload, TLVs that
// tile the rest exactly, and a correct CRC32c if a PP2_TYPE_CRC32C TLV is
// present. LOCAL, v1 UNKNOWN and AF_UNIX headers carry no usable IP
// address: Header.Src is invalid and the caller uses the socket's real
// endpoints.
//
// Interoperability is tested against HAProxy itself (TestHAProxy, skipped
// when the haproxy binary is absent): its send-proxy and send-proxy-v2
// output parses here, and its accept-proxy takes what AppendV1/AppendV2 build.
//
// AppendV1 and AppendV2 build headers toward upstreams.
//
// Non-goals: reading from connections, timeouts, deciding which sources are
// trusted to send a header (the listener checks its trusted_sources first).
//
// Concurrency: all functions are pure; Header.TLVs aliases the caller's
// buffer and is valid only until that buffer is reused (Clone copies).
package proxyproto
