package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/cloudflare/tableflip"
	"github.com/relayd/relayd/relay"
	"golang.org/x/sys/unix"
)

// flipper hands listening sockets to a successor relayd with
// cloudflare/tableflip: SIGUSR2 starts the new binary with the sockets, the
// new process starts accepting and says it is ready, then this one stops
// accepting (closing only its copies, so connections waiting in the accept
// queues go to the successor) and drains. Each listener has one socket per
// relay loop (SO_REUSEPORT group), named "listener/<name>/<i>".
type flipper struct {
	upg *tableflip.Upgrader
	// moved holds inherited sockets of listeners the new config moved to
	// another address. They stop listening only once this process is ready
	// (settle): until then the parent still serves on them, and a start
	// that fails must leave it serving.
	moved []int
}

func fdName(listener string, i int) string { return "listener/" + listener + "/" + strconv.Itoa(i) }

func (f *flipper) inherited(name string, want netip.AddrPort) []int {
	var fds []int
	for _, fd := range inheritedFDs(f.upg, name) {
		got, err := relay.LocalAddr(fd)
		if err != nil || !relay.SameListen(got, want) {
			// The new config moved this listener: once this process is
			// ready, the old socket must stop listening for everyone, or
			// it would queue clients no one serves (settle).
			f.moved = append(f.moved, fd)
			continue
		}
		fds = append(fds, fd)
	}
	return fds
}

// inheritedFDs are the sockets a predecessor published for listener name,
// in order, each a close-on-exec copy the caller owns.
func inheritedFDs(upg *tableflip.Upgrader, name string) []int {
	var fds []int
	for i := 0; ; i++ {
		file, err := upg.Fds.File(fdName(name, i))
		if err != nil || file == nil {
			return fds
		}
		fd, err := unix.Dup(int(file.Fd()))
		file.Close()
		if err != nil {
			return fds
		}
		unix.CloseOnExec(fd)
		fds = append(fds, fd)
	}
}

// settle ends the start-up: ready reports whether this process got ready
// (the parent then drains). If it did, the moved listeners' sockets stop
// listening for everyone; if not, only this process's copies are closed and
// the parent keeps serving on them.
func (f *flipper) settle(ready bool) {
	for _, fd := range f.moved {
		if ready {
			_ = unix.Shutdown(fd, unix.SHUT_RD)
		}
		unix.Close(fd)
	}
	f.moved = nil
}

func (f *flipper) publish(name string, fds []int) error {
	for i, fd := range fds {
		if err := publishFD(f.upg, fdName(name, i), fd); err != nil {
			return err
		}
	}
	return nil
}

// publishFD offers fd (which stays the caller's) to a future successor
// under name.
func publishFD(upg *tableflip.Upgrader, name string, fd int) error {
	dup, err := unix.Dup(fd) // tableflip dups again; this copy is ours to close
	if err != nil {
		return err
	}
	file := os.NewFile(uintptr(dup), name)
	err = upg.Fds.AddFile(name, file)
	file.Close()
	if err != nil {
		return fmt.Errorf("upgrade: publish %s: %w", name, err)
	}
	return nil
}
