// Package resolve resolves the target names of SOCKS5 and HTTP CONNECT
// clients off the relay loops: a fixed pool of worker goroutines behind a
// bounded queue, each lookup with a timeout. Resolve never blocks: a full
// queue is refused at once (ErrQueueFull), and the answer is delivered to a
// callback on a worker goroutine, which must hand it back to the loop
// through the loop's task queue.
//
// It lived in package policy, which decides where destinations may go; a
// worker pool with goroutines is not a policy. The caller passes the
// answer to policy.Policy.Pick and connects to exactly the address picked,
// so a second resolution (DNS rebinding) cannot swap it.
//
// Errors: ErrTimeout also wraps context.DeadlineExceeded, so the protocols'
// timeout replies (SOCKS5 0x06, HTTP 504) follow from errors.Is; a name that
// resolves to nothing is ErrNoAddresses; names that fail
// policy.ValidHostname are refused before any lookup (ErrBadHost).
//
// Concurrency: a Resolver is safe for concurrent use; Close stops the
// workers and waits for them; lookups in flight are abandoned.
package resolve
