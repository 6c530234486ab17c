package master

import (
	"fmt"
	"net/netip"

	"github.com/relayd/relayd/internal/steer"
	"github.com/relayd/relayd/relay"
)

// BindGroup binds n SO_REUSEPORT sockets to addr (port 0: one free port for
// all), in order, and steers each client source to socket steer.Index(src,
// n). Socket i is worker i's for the master's whole life: closing one would
// renumber the group (see package steer).
func BindGroup(addr netip.AddrPort, n, backlog int) ([]int, netip.AddrPort, error) {
	var fds []int
	for range n {
		fd, bound, err := relay.ListenSocket(addr, true, backlog)
		if err != nil {
			closeAll(fds)
			return nil, addr, err
		}
		addr = bound
		fds = append(fds, fd)
	}
	if err := steer.Attach(fds[0], n); err != nil {
		closeAll(fds)
		return nil, addr, fmt.Errorf("listen %s: %w", addr, err)
	}
	return fds, addr, nil
}

// AdoptGroup checks inherited sockets (an upgrade's predecessor bound them)
// for reuse as a group of n on addr: the same count, each listening on
// addr. The steering program is the group's, so it stays attached.
func AdoptGroup(fds []int, addr netip.AddrPort, n int) (netip.AddrPort, error) {
	if len(fds) != n {
		return addr, fmt.Errorf("the predecessor has %d sockets for it, this process needs %d (changing processes needs a restart)", len(fds), n)
	}
	var bound netip.AddrPort
	for _, fd := range fds {
		got, err := relay.LocalAddr(fd)
		if err != nil {
			return addr, err
		}
		if !relay.SameListen(got, addr) {
			return addr, fmt.Errorf("an inherited socket is bound to %s, not %s", got, addr)
		}
		bound = got
	}
	return bound, nil
}

// CloseAll closes fds.
func CloseAll(fds []int) { closeAll(fds) }
