// Package shm holds the session counters that the worker processes of one
// relayd share, so that limits.max_sessions and a listener's max_sessions
// mean with N workers exactly what they mean in one process.
//
// Why shared memory: the caps are checked on every accept, inside a relay
// loop that must never block, so asking the master over a socket is out;
// splitting a cap into N per-worker shares is not the same limit (one busy
// worker would refuse while the others sit idle). The table is a memfd the
// master creates and every worker maps; its cells are 64-bit atomics, which
// work across processes because they are plain memory operations (x86-64
// and arm64 atomics are address-, not process-, based).
//
// Layout: row 0 holds the limits (the master writes them at start and on
// reload; 0 = no cap), row 1+w holds worker w's count per key. Key 0 is the
// global count, keys 1… are listeners, numbered by the master by name. A
// worker counts only in its own row; the total is the sum of the rows. So a
// worker that is killed leaves nothing behind that another process must
// undo: the master zeroes the dead worker's row before its replacement
// starts (Table.Reset).
//
// Acquire increments its own cell first and then reads the sum; if the sum
// is over the cap it takes the increment back. Two workers admitting at the
// same instant at the cap may both refuse (each sees the other's
// increment) but both can never admit over it: the second reader sees both
// increments. That is the same rule relay uses between its loops in one
// process (an atomic add, then a check), so the cap means the same.
package shm
