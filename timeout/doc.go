// Package timeout is a hashed timing wheel for event loops.
//
// A Wheel has no goroutine and no clock of its own: the owner passes "now"
// to every call and calls Advance from its loop (relayd drives it from a
// timerfd tick). Schedule and Stop are O(1); Advance costs O(ticks elapsed +
// timers that share the visited slots). Timers are intrusive: the owner embeds
// a Timer in its own struct and binds the callback once with Init, so arming
// and re-arming a timer allocates nothing. That is why this package exists
// rather than time.AfterFunc (a runtime timer and a goroutine wake-up per
// session) — relayd keeps one wheel per relay loop and per connector worker,
// and a million idle sessions must not cost a million runtime timers.
//
// A timer never fires early: it fires on the first Advance whose now is at or
// after its deadline, rounded up to the wheel's tick. The wheel is not safe
// for concurrent use; it belongs to the goroutine that drives it, and so do
// its timers.
//
// Model: nats-server's server/thw, with two deliberate differences: timers
// are intrusive (thw keeps a map of ids per slot, which allocates), and
// there is no next-expiry query yet (thw tracks its lowest deadline), so an
// owner cannot sleep until the next deadline and ticks while any timer is
// armed instead.
package timeout
