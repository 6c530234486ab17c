// Package tlshello reads what a router needs of a TLS ClientHello — the
// server name (SNI), the offered ALPN protocols and versions — from the
// first bytes a client sent, without terminating TLS: relayd routes on it
// and forwards the same bytes, untouched, to the upstream that holds the
// key.
//
// Like the other edge parsers it is incremental and made for a
// non-blocking event loop: the caller hands Parse the bytes received so far
// (from its own bounded buffer) and gets back ErrNeedMore (a valid prefix:
// read more and call again), a Hello, or a precise error (errors.Is-testable)
// after which the connection is refused. Parse keeps no state between
// calls. Until the last record of the hello has arrived it only walks the
// 5-byte record headers, so a client that sends its hello one byte at a
// time costs a few comparisons per byte, not a reparse.
//
// What it checks, as a TLS server would before it could route:
//
//   - the record layer: handshake records (type 22) with major version 3
//     and 1..2^14 bytes each (RFC 8446 §5.1), the hello fragmented over as
//     many records as the client likes; any other record type before the
//     hello is complete is malformed;
//   - an SSLv2-compatible CLIENT-HELLO (RFC 5246 appendix E.2) is refused
//     with ErrSSLv2, never guessed at; bytes that are not a handshake record
//     at all are ErrNotTLS (the caller may route them as "other");
//   - the ClientHello body (RFC 8446 §4.1.2): every length-prefixed vector
//     bounds-checked, no bytes left over, no extension twice; server_name
//     (RFC 6066 §3) with at most one host_name, non-empty, printable ASCII
//     (an IDN is sent as its A-label: it is matched as sent), no trailing
//     dot; ALPN (RFC 7301) with non-empty names; supported_versions.
//     GREASE values (RFC 8701) are skipped in versions and ALPN, and are
//     ordinary unknown extensions otherwise.
//
// The vectors are read with golang.org/x/crypto/cryptobyte, the Go team's
// bounds-checked TLS-style parser (crypto/tls uses its vendored copy for
// the same messages); crypto/tls itself cannot help here, as it reads a
// hello only as part of a handshake it then completes. The record layer
// around the hello is this package's, since cryptobyte reads one buffer
// and a hello may span several records.
package tlshello
