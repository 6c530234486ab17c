package connector

import (
	"errors"
	"fmt"
	"net/netip"
)

// AdminState is an operator's setting of one upstream, made at run time
// (the admin control API, `relayd ctl`), beside its health.
type AdminState uint32

// Admin states. The zero value is Enabled.
const (
	// Enabled: sessions are routed to it while it is healthy.
	Enabled AdminState = iota
	// Draining: no new session is routed to it; sessions already on it,
	// and connects already queued for it, finish. Health checks go on, so
	// its state stays true for when it is enabled again.
	Draining
	// Disabled: out for maintenance. No new session, as Draining, and its
	// active checks pause (an upstream being worked on would flap).
	Disabled
)

var adminNames = [...]string{Enabled: "enabled", Draining: "draining", Disabled: "disabled"}

func (s AdminState) String() string {
	if int(s) < len(adminNames) {
		return adminNames[s]
	}
	return fmt.Sprintf("AdminState(%d)", uint32(s))
}

// ParseAdminState reads "enabled", "draining"/"drain", "disabled"/"disable"
// or "enable".
func ParseAdminState(s string) (AdminState, error) {
	switch s {
	case "enabled", "enable":
		return Enabled, nil
	case "draining", "drain":
		return Draining, nil
	case "disabled", "disable":
		return Disabled, nil
	}
	return 0, fmt.Errorf("%w: admin state %q: want enable, drain or disable", ErrInvalidRequest, s)
}

// ErrUnknownUpstream: no listener has that upstream.
var ErrUnknownUpstream = errors.New("connector: no such upstream")

// SetAdminState sets the admin state of listener's upstream addr and
// returns the state it had. The change applies to the next routing
// decision; it survives a reload that keeps the upstream, not a restart.
func (p *Pool) SetAdminState(listener string, addr netip.AddrPort, st AdminState) (AdminState, error) {
	if st > Disabled {
		return 0, fmt.Errorf("%w: admin state %d", ErrInvalidRequest, st)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.ups[UpstreamKey{Listener: listener, Addr: addr}]
	if u == nil || u.retired {
		return 0, fmt.Errorf("%w: %s %v", ErrUnknownUpstream, listener, addr)
	}
	// Only routing reads the state (eligibleLocked): requests already
	// queued for u keep their place, since they were routed while it was
	// enabled, and a drain lets what is under way finish.
	return AdminState(u.admin.Swap(uint32(st))), nil
}

// State is the upstream's state as an operator reads it: "disabled" or
// "draining" when so set, else "up" or "down" by health.
func (s *UpstreamStats) State() string {
	switch s.Admin {
	case Draining, Disabled:
		return s.Admin.String()
	}
	if s.Up {
		return "up"
	}
	return "down"
}
