// Package route decides which upstream group a connection goes to from
// what its client sent first: the TLS server name (SNI) and ALPN
// protocols of a ClientHello (edge/tlshello), the Host of a plaintext
// HTTP/1.x request (edge/httphost), or neither ("other"). It is the
// matching half of relayd's listener routes; the relay peeks at the bytes
// and the connector dials the group.
//
// A Table is an ordered list of rules; a rule matches when every field it
// gives matches, and the first matching rule wins (as HAProxy's use_backend
// lines and nginx's map). No rule matching means the listener's default
// group. Compile checks a table the way an operator needs it checked at
// config time, with errors that name the rule: duplicate names, bad
// patterns, rules that can never match (SNI or ALPN with Host, or with
// protocol other) and rules no connection can reach because an earlier
// rule matches everything they would.
package route
