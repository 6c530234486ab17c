package master

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Message types on the control socket.
const (
	// master → worker
	MsgHello  = "hello"  // the first message: config, sockets, table
	MsgReload = "reload" // a new config (validated by the master) and the sockets of new listeners
	MsgDrain  = "drain"  // stop accepting, finish sessions, exit
	// worker → master
	MsgReady    = "ready"    // serving
	MsgReloaded = "reloaded" // reply to MsgReload; Error says why it failed
	MsgFailed   = "failed"   // the start failed (Error); the worker exits
)

// Msg is one control message. Which fields are set depends on Type.
type Msg struct {
	Type    string `json:"type"`
	Worker  int    `json:"worker,omitempty"`  // hello: this worker's index
	Workers int    `json:"workers,omitempty"` // hello: how many there are
	Gen     int    `json:"gen,omitempty"`     // hello, reload: the master's config generation
	// Config is the whole effective configs.Config as JSON: the worker
	// applies exactly what the master validated.
	Config json.RawMessage `json:"config,omitempty"`
	// Listeners are the sockets sent with this message (hello: all; reload:
	// the new and moved ones), each as an index into the message's fds.
	Listeners []ListenerFD `json:"listeners,omitempty"`
	Admin     int          `json:"admin,omitempty"`      // hello: fd index of the worker's admin socket, -1 none
	Table     int          `json:"table,omitempty"`      // hello: fd index of the shared session table
	TableKeys int          `json:"table_keys,omitempty"` // hello: its key count
	// Upstreams are the upstream admin states an operator set (hello:
	// the worker starts with them).
	Upstreams []UpstreamState `json:"upstreams,omitempty"`
	Error     string          `json:"error,omitempty"`
	PID       int             `json:"pid,omitempty"` // ready
}

// ListenerFD names one socket sent with a message.
type ListenerFD struct {
	Name string `json:"name"`
	Key  int    `json:"key"` // the listener's key in the shared session table
	FD   int    `json:"fd"`  // index into the message's fds
}

// maxMsg bounds one message. A SOCK_SEQPACKET message must fit the socket
// buffer whole; 192 KiB stays under Linux's default wmem_max of 208 KiB,
// and a config is a few KiB.
const (
	maxMsg = 192 << 10
	maxFDs = 250 // SCM_MAX_FD is 253
)

// Conn is one end of a master–worker control socket: a SOCK_SEQPACKET
// socketpair, so each message arrives whole and alone, with its file
// descriptors (SCM_RIGHTS). Send is safe from several goroutines; Recv must
// be called from one.
type Conn struct {
	fd     int
	sendMu sync.Mutex
	buf    []byte
	oob    []byte
}

// Pair makes a connected control socket pair: the master keeps the first
// and passes the second to the worker (which gets it as fd 3).
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("master: socketpair: %w", err)
	}
	return NewConn(fds[0]), os.NewFile(uintptr(fds[1]), "relayd-control"), nil
}

// NewConn wraps a control socket, which it owns.
func NewConn(fd int) *Conn {
	unix.CloseOnExec(fd)
	return &Conn{fd: fd, buf: make([]byte, maxMsg), oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
}

// Send writes m with fds attached. The fds stay the caller's (the kernel
// gives the peer its own copies).
func (c *Conn) Send(m Msg, fds []int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return fmt.Errorf("master: %s message of %d bytes is over the %d-byte limit", m.Type, len(b), maxMsg)
	}
	if len(fds) > maxFDs {
		return fmt.Errorf("master: %s message with %d sockets is over the %d limit", m.Type, len(fds), maxFDs)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	for {
		err = unix.Sendmsg(c.fd, b, oob, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("master: send %s: %w", m.Type, err)
	}
	return nil
}

// ErrClosed is Recv's error once the peer has closed its end (or exited).
var ErrClosed = errors.New("master: control socket closed")

// Recv blocks for the next message. Received fds are the caller's to
// close. It returns ErrClosed when the peer is gone.
func (c *Conn) Recv() (Msg, []int, error) {
	var m Msg
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(c.fd, c.buf, c.oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return m, nil, fmt.Errorf("master: receive: %w", err)
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(c.oob[:oobn])
		if err != nil {
			return m, nil, fmt.Errorf("master: control message: %w", err)
		}
		for _, cm := range cmsgs {
			got, err := unix.ParseUnixRights(&cm)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 0 && oobn == 0 {
		return m, nil, ErrClosed
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return m, nil, errors.New("master: control message truncated")
	}
	if err := json.Unmarshal(c.buf[:n], &m); err != nil {
		closeAll(fds)
		return m, nil, fmt.Errorf("master: control message: %w", err)
	}
	return m, fds, nil
}

// Shutdown makes the peer's Recv return ErrClosed (and this end's too),
// without closing the fd under a concurrent Recv.
func (c *Conn) Shutdown() { _ = unix.Shutdown(c.fd, unix.SHUT_RDWR) }

// Close closes the socket; call it once nothing uses the Conn.
func (c *Conn) Close() error { return unix.Close(c.fd) }

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// UpstreamState is one upstream's admin state ("draining", "disabled") as
// the master hands it to a worker.
type UpstreamState struct {
	Listener string `json:"listener"`
	Upstream string `json:"upstream"`
	State    string `json:"state"`
}
