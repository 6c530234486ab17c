// Package nbsys makes the system calls of relayd's event loops on
// non-blocking descriptors as raw system calls: read, write, shutdown,
// close, socket, connect, setsockopt and splice, each of which returns at
// once (EAGAIN, EINPROGRESS) instead of sleeping.
//
// Why not golang.org/x/sys/unix: its calls go through syscall.Syscall,
// which wraps each in the scheduler's entersyscall/exitsyscall. While a
// goroutine is inside one, its P is in the _Psyscall state, and sysmon
// retakes a P it sees there across two of its ticks (20 µs at its fastest).
// On a shared 2-core machine the kernel often preempts a thread in the
// middle of a system call (the write that wakes the peer process is a
// common place), so sysmon kept finding Ps to retake: it then polled at its
// fastest (usleep 20 µs, a quarter of relayd's context switches under short
// sessions), and the loop that came back from its write found its P gone
// and parked its thread until one was free (futex sleep and wake-up, ~17%
// of the context switches). A raw system call keeps the P in _Prunning, so
// none of that can happen; the calls here cannot block, so holding the P
// through them is what the loop wants anyway. The one call that does
// block, epoll_wait, gives the P away on purpose (internal/evloop).
//
// Semantics are x/sys/unix's: n is -1 with an error, errors are
// syscall.Errno values (compare with ==, or errors.Is).
//
// What raw calls give up: the race detector's annotations of the buffers
// (x/sys marks a read's buffer as written when built with -race). The
// loops own their buffers, so there is nothing for it to find there.
package nbsys
