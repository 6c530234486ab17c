//go:build linux

// Package evloop is the event loop shared by relayd's relay loops and
// connector workers: one gnet poller (epoll, via the public
// github.com/panjf2000/gnet/v2/pkg/netpoll package), one timing wheel, a
// periodic tick that drives the wheel, and a task queue for other
// goroutines (Post: a task it accepts always runs, also across Stop).
//
// Why it exists: gnet's Poller.Polling blocks in epoll_wait with no timeout,
// so it has no notion of time. The tick is a timerfd registered in the same
// poller — no extra goroutine, no cross-thread wake-up per tick — armed only
// while the wheel holds a timer. relayd is Linux-only (timerfd here,
// accept4 and Linux socket options in the relay); so is this package.
//
// Concurrency: everything a Loop owns (the wheel, the fds its owner registers,
// Now) is touched only on the loop's goroutine, the one that calls Run. Other
// goroutines talk to it only with Post and Stop.
package evloop
