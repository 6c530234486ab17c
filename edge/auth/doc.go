// Package auth holds the username/password credentials shared by the SOCKS5
// (RFC 1929) and HTTP CONNECT (Proxy-Authorization: Basic) handshakes.
//
// Usage:
//
//	creds, err := auth.LoadCredentials("/etc/relayd/users") // "user:password" lines
//	ok := creds.Verify(user, pass)                          // or pass creds.Verify as an auth.Verifier
//
// Passwords are kept only as SHA-256 digests and compared with
// crypto/subtle, and an unknown user costs the same hash-and-compare as a
// known one, so response timing does not tell an attacker whether a user
// exists or how much of a password matched. Verify does not allocate, so it
// can run inside an event loop.
//
// Non-goals: password hashing for storage at rest (bcrypt/argon2 would cost
// milliseconds per check, far too slow to run on a relay loop; the file is
// plaintext and must be protected by file permissions), rate limiting of
// failures (the caller counts failures and feeds them to policy.SourceLimiter).
//
// Concurrency: a *Credentials is immutable after construction and safe for
// concurrent use by any number of loops.
package auth
