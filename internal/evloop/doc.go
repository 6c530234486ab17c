// Package evloop is the event loop shared by relayd's relay loops and
// connector workers: one gnet poller (epoll/kqueue, via the public
// github.com/panjf2000/gnet/v2/pkg/netpoll package), one timing wheel, and a
// periodic tick that drives the wheel.
//
// Why it exists: gnet's Poller.Polling blocks in epoll_wait with no timeout,
// so it has no notion of time. On Linux the tick is a timerfd registered in
// the same poller — no extra goroutine, no cross-thread wake-up per tick; on
// other systems a ticker goroutine posts the tick as a task.
//
// Concurrency: everything a Loop owns (the wheel, the fds its owner registers,
// Now) is touched only on the loop's goroutine, the one that calls Run. Other
// goroutines talk to it only with Post and Stop.
package evloop
