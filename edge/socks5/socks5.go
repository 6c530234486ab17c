package socks5

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
)

// Protocol constants (RFC 1928, RFC 1929).
const (
	Version         = 0x05
	MethodNoAuth    = 0x00
	MethodUserPass  = 0x02
	MethodNone      = 0xFF
	CmdConnect      = 0x01
	CmdBind         = 0x02
	CmdUDPAssociate = 0x03
	AtypIPv4        = 0x01
	AtypDomain      = 0x03
	AtypIPv6        = 0x04
	authVersion     = 0x01
)

// MaxHandshake is the largest greeting+auth+request a client can send
// (2+255 + 3+255+255 + 4+1+255+2); a buffer of this size never overflows.
const MaxHandshake = 1032

// Reply is the REP field of a server reply.
type Reply byte

const (
	Succeeded        Reply = 0x00
	GeneralFailure   Reply = 0x01
	NotAllowed       Reply = 0x02 // connection not allowed by ruleset
	NetUnreachable   Reply = 0x03
	HostUnreachable  Reply = 0x04
	ConnRefused      Reply = 0x05
	TTLExpired       Reply = 0x06 // also used for connect timeouts
	CmdNotSupported  Reply = 0x07
	AddrNotSupported Reply = 0x08
)

var (
	ErrNeedMore = errors.New("socks5: need more bytes")
	// ErrBadVersion: a greeting or request whose version is not 5 (closed without reply).
	ErrBadVersion = errors.New("socks5: bad protocol version")
	// ErrNoAcceptableMethod: the client offered no method we accept (replied 0xFF).
	ErrNoAcceptableMethod = errors.New("socks5: no acceptable authentication method")
	// ErrBadAuthVersion: the RFC 1929 sub-negotiation version is not 1 (closed without reply).
	ErrBadAuthVersion = errors.New("socks5: bad auth sub-negotiation version")
	// ErrAuthFailed: wrong user or password (replied status 0x01).
	ErrAuthFailed = errors.New("socks5: authentication failed")
	// ErrCommandNotSupported: BIND, UDP ASSOCIATE or an unknown command (replied 0x07).
	ErrCommandNotSupported = errors.New("socks5: command not supported")
	// ErrAddrTypeNotSupported: an unknown ATYP (replied 0x08).
	ErrAddrTypeNotSupported = errors.New("socks5: address type not supported")
	// ErrBadHost: an empty or invalid domain name (replied 0x04).
	ErrBadHost = errors.New("socks5: invalid host name")
	// ErrBadRequest: a nonzero reserved byte (replied 0x01).
	ErrBadRequest = errors.New("socks5: malformed request")
)

// Config configures a Server.
type Config struct {
	// Verify checks RFC 1929 credentials. Nil means no authentication
	// (method 0x00); non-nil means user/pass is required (method 0x02).
	Verify auth.Verifier
}

// Request is the client's CONNECT target: exactly one of Host and Addr is set.
type Request struct {
	Host string         // validated domain name, to be resolved off the loop
	Addr netip.AddrPort // IP target (IPv4, IPv6, or a domain that was an IP literal)
	Port uint16
}

type state uint8

const (
	stGreeting state = iota
	stAuth
	stRequest
	stDone
	stFailed
)

// Server is one session's handshake state. The zero value is a no-auth
// server; use New for one with authentication.
type Server struct {
	verify auth.Verifier
	state  state
	err    error
	req    Request
	user   string // the user name given (RFC 1929), accepted or not
}

// New returns a Server at the start of a handshake.
func New(cfg Config) Server { return Server{verify: cfg.Verify} }

// Request returns the CONNECT target once Feed has returned nil.
func (s *Server) Request() Request { return s.req }

// User is the user name the client gave (RFC 1929), whether or not it was
// accepted; "" without user/pass authentication. For the log.
func (s *Server) User() string { return s.user }

// Done reports whether the request has been read.
func (s *Server) Done() bool { return s.state == stDone }

// Feed consumes the complete messages at the start of b, appends the
// replies they cause to out, and returns the bytes consumed, out, and nil
// (request ready), ErrNeedMore, or a terminal error. After a terminal error
// (or after the request), Feed consumes nothing more and returns the same result.
func (s *Server) Feed(b, out []byte) (int, []byte, error) {
	n := 0
	for {
		var m int
		var err error
		switch s.state {
		case stGreeting:
			m, out, err = s.greeting(b[n:], out)
		case stAuth:
			m, out, err = s.userPass(b[n:], out)
		case stRequest:
			m, out, err = s.request(b[n:], out)
		case stDone:
			return n, out, nil
		default:
			return n, out, s.err
		}
		n += m
		if errors.Is(err, ErrNeedMore) {
			return n, out, err
		}
		if err != nil {
			s.state, s.err = stFailed, err
			return n, out, err
		}
	}
}

func (s *Server) greeting(b, out []byte) (int, []byte, error) {
	if len(b) >= 1 && b[0] != Version {
		return 0, out, ErrBadVersion
	}
	if len(b) < 2 || len(b) < 2+int(b[1]) {
		return 0, out, ErrNeedMore
	}
	want := byte(MethodNoAuth)
	if s.verify != nil {
		want = MethodUserPass
	}
	n := 2 + int(b[1])
	for _, m := range b[2:n] {
		if m == want {
			if want == MethodUserPass {
				s.state = stAuth
			} else {
				s.state = stRequest
			}
			return n, append(out, Version, want), nil
		}
	}
	return n, append(out, Version, MethodNone), ErrNoAcceptableMethod
}

func (s *Server) userPass(b, out []byte) (int, []byte, error) {
	if len(b) >= 1 && b[0] != authVersion {
		return 0, out, ErrBadAuthVersion
	}
	if len(b) < 2 {
		return 0, out, ErrNeedMore
	}
	ulen := int(b[1])
	if len(b) < 3+ulen {
		return 0, out, ErrNeedMore
	}
	plen := int(b[2+ulen])
	n := 3 + ulen + plen
	if len(b) < n {
		return 0, out, ErrNeedMore
	}
	user, pass := b[2:2+ulen], b[3+ulen:n]
	s.user = string(user)
	if ulen == 0 || !s.verify(user, pass) {
		return n, append(out, authVersion, 0x01), ErrAuthFailed
	}
	s.state = stRequest
	return n, append(out, authVersion, 0x00), nil
}

func (s *Server) request(b, out []byte) (int, []byte, error) {
	if len(b) >= 1 && b[0] != Version {
		return 0, out, ErrBadVersion
	}
	if len(b) < 4 {
		return 0, out, ErrNeedMore
	}
	var n int
	switch b[3] {
	case AtypIPv4:
		n = 4 + 4 + 2
	case AtypIPv6:
		n = 4 + 16 + 2
	case AtypDomain:
		if len(b) < 5 {
			return 0, out, ErrNeedMore
		}
		n = 4 + 1 + int(b[4]) + 2
	default:
		// The address length is unknown, so the rest cannot be skipped.
		return 4, AppendReply(out, AddrNotSupported, netip.AddrPort{}), ErrAddrTypeNotSupported
	}
	if len(b) < n {
		return 0, out, ErrNeedMore
	}
	if b[1] != CmdConnect {
		return n, AppendReply(out, CmdNotSupported, netip.AddrPort{}), ErrCommandNotSupported
	}
	if b[2] != 0 {
		return n, AppendReply(out, GeneralFailure, netip.AddrPort{}), ErrBadRequest
	}
	port := uint16(b[n-2])<<8 | uint16(b[n-1])
	var req Request
	switch b[3] {
	case AtypIPv4:
		req.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case AtypIPv6:
		req.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[4:20])), port)
	case AtypDomain:
		name := b[5 : n-2]
		if a, ok := parseLiteral(name); ok {
			req.Addr = netip.AddrPortFrom(a, port)
		} else if policy.ValidHostname(name) {
			req.Host = string(name)
		} else {
			return n, AppendReply(out, HostUnreachable, netip.AddrPort{}), ErrBadHost
		}
	}
	req.Port = port
	s.req, s.state = req, stDone
	return n, out, nil
}

// parseLiteral accepts an IP literal sent as a domain (some clients do),
// without zones: a zone would name an interface of this host.
func parseLiteral(name []byte) (netip.Addr, bool) {
	if len(name) == 0 || len(name) > 45 {
		return netip.Addr{}, false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':') {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(string(name))
	return a, err == nil
}

// AppendReply appends a server reply with code rep and the bound address
// (the relay's local address of the upstream connection on success; an
// invalid bound is sent as 0.0.0.0:0, as failures usually are).
func AppendReply(b []byte, rep Reply, bound netip.AddrPort) []byte {
	b = append(b, Version, byte(rep), 0x00)
	a := bound.Addr().Unmap()
	switch {
	case !bound.IsValid():
		b = append(b, AtypIPv4, 0, 0, 0, 0, 0, 0)
		return b
	case a.Is4():
		a4 := a.As4()
		b = append(b, AtypIPv4)
		b = append(b, a4[:]...)
	default:
		a16 := a.As16()
		b = append(b, AtypIPv6)
		b = append(b, a16[:]...)
	}
	return append(b, byte(bound.Port()>>8), byte(bound.Port()))
}

// DialReply maps an upstream connect (or resolve) error to the reply code a
// client should see.
func DialReply(err error) Reply {
	var errno syscall.Errno
	switch {
	case err == nil:
		return Succeeded
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return TTLExpired
	case errors.As(err, &errno):
		switch errno {
		case syscall.ECONNREFUSED:
			return ConnRefused
		case syscall.ENETUNREACH, syscall.ENETDOWN:
			return NetUnreachable
		case syscall.EHOSTUNREACH, syscall.EHOSTDOWN:
			return HostUnreachable
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsTimeout {
			return TTLExpired
		}
		return HostUnreachable
	}
	return GeneralFailure
}
