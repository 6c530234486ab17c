//go:build linux

// Package evloop is the event loop shared by relayd's relay loops and
// connector workers: one epoll set, one timing wheel, and a task queue for
// other goroutines (Post: a task it accepts always runs, also across Stop).
//
// Why it is written here rather than taken from gnet (whose pkg/netpoll
// poller relayd used first): a relay loop needs three things gnet's
// Polling does not offer, and each cost system calls and wake-ups per
// session (review §3.2, P1):
//   - an end-of-batch hook: fds released while handling a batch are closed
//     when the batch is done (so a reused fd number cannot meet a stale
//     event), without posting a task to itself through the eventfd;
//   - a poll timeout: the loop sleeps until the wheel's next deadline, so it
//     never ticks while nothing is due (no timerfd, no 100 Hz wake-ups with
//     idle sessions);
//   - posts that cost no system call when the loop is awake: the eventfd is
//     written only when the loop sleeps or is about to.
//
// Polls that cannot block (timeout 0) are raw system calls, so a busy loop
// skips the scheduler's syscall bookkeeping; before sleeping, a loop that
// found nothing yields a few times and polls again (see spins). The sleep
// itself is epoll_wait in two steps (Loop.sleep): up to 1 ms with the
// loop's P kept, then with the P given away (runtime.entersyscallblock), so
// that sysmon never finds a sleeping loop's P to retake and does not poll
// at its fastest (poll_linux.go has the measurements; internal/nbsys does
// the same for the loops' other system calls). Parking the loop goroutine
// on the Go runtime's poller instead (the epoll fd registered there, read
// through a RawConn with a deadline) was measured against a plain blocking
// epoll_wait on 2 vCPUs: short sessions +7% sessions/s, -30% context
// switches, but persistent-connection ping-pong -15% requests/s (two
// pollers per wake-up), so it was not kept. Only the alarm (EnableAlarm),
// for deadlines finer than epoll's milliseconds, is a timerfd. relayd is Linux-only (epoll, timerfd, accept4 and Linux socket
// options in the relay); so is this package.
//
// Concurrency: everything a Loop owns (the wheel, the fds its owner
// registers, Now) is touched only on the loop's goroutine, the one that
// calls Run. Other goroutines talk to it only with Post and Stop.
package evloop
