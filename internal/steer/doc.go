// Package steer makes the kernel pick a listening socket of a SO_REUSEPORT
// group by the client's source address, so that every connection from one
// source reaches the same relayd worker process.
//
// Why: per_source_sessions and per_source_rate are counted per process. With
// the kernel's default reuseport hash (over the 4-tuple) a source's
// connections spread over every worker and each would admit its own full
// quota. Steering each source to one worker makes the per-process counts the
// whole truth, with no cross-process traffic on the accept path.
//
// How: a classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF returns
// the index of the socket in the group (the order the sockets joined it).
// It hashes the IPv4 source address, or the /64 prefix of an IPv6 one (the
// unit the per-source limits use for IPv6), with a multiplicative hash, and
// takes it modulo the number of workers. The indices only stay put while no
// socket leaves the group (the kernel moves the last socket into a hole), so
// the master binds one socket per worker and holds every one of them for
// its whole life; workers never bind their own.
//
// No library here does this: golang.org/x/net/bpf could assemble the 12
// instructions, but encoding them by hand keeps the dependency list as it
// is and the program readable beside its hash in Go (Index), which the
// tests compare against the kernel's choice.
package steer
