// Package edge groups the protocols relayd speaks at its edge, before a
// session relays bytes: the PROXY protocol (edge/proxyproto), SOCKS5
// (edge/socks5) and HTTP CONNECT (edge/httpconnect) parsers, their
// credentials (edge/auth), the destination and source policies
// (edge/policy), the resolver for client-named targets (edge/resolve), and
// routing by what a client sends first: the TLS ClientHello
// (edge/tlshello), a plaintext request's Host (edge/httphost) and the
// rules that pick an upstream group from them (edge/route).
//
// They are public and reusable: each parser works on byte slices, knows no
// loops, fds or sessions, allocates little and is fuzzed. The relay drives
// them from its loops (relay/edge_*.go). This package itself holds nothing
// but this map.
package edge
