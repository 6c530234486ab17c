// Package policy decides where client-chosen destinations may go and who
// may connect, for the SOCKS5 and HTTP CONNECT listeners.
//
//   - Policy.Check(addrport) → (rule, ok): destination policy. Deny by
//     default: loopback, RFC 1918, 100.64/10 (CGNAT), link-local (169.254/16,
//     incl. the 169.254.169.254 metadata service, and fe80::/10),
//     multicast, unspecified and 0/8, ULA fc00::/7, reserved/documentation/
//     benchmarking ranges, broadcast, port 0, and relayd's own listen
//     addresses (AddSelf). IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
//     (::a.b.c.d), SIIT (::ffff:0:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4
//     (2002::/16) forms are reduced to the IPv4 address they carry before
//     checking, so no spelling reaches a denied host. Explicit Allow entries
//     (CIDR + ports) can re-open a default-denied range only with a prefix
//     inside that range (127.0.0.1/32 port 8080 re-opens that one port for
//     a test; 0.0.0.0/0 never opens 10/8). The rule name is returned so the
//     caller can count denials by rule.
//   - ValidHostname: the syntax check shared by socks5, httpconnect and
//     edge/resolve.
//   - Policy.Pick chooses the first resolved address (from edge/resolve)
//     that passes Check, and the caller connects to exactly that address
//     (no second resolution, so DNS rebinding cannot swap it).
//   - SourceACL: source allow/deny CIDRs.
//   - SourceLimiter: per-source concurrent sessions and new sessions per
//     second (token bucket), memory-bounded, time passed in.
//
// Documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
// 2001:db8::/32) are denied as "reserved": nothing public lives there, and
// labs reuse them internally.
//
// Non-goals: hostname allow/deny lists (names are checked after resolution,
// by address), per-user policy, counting (the caller counts by rule).
//
// Concurrency: Policy and SourceACL are immutable after construction (call
// AddSelf before sharing) and safe for concurrent use. SourceLimiter is safe
// for concurrent use by many loops (sharded locks, short critical
// sections); no function here blocks.
package policy
