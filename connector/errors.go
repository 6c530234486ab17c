//go:build linux

package connector

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// Errors reported in Request.Err or returned by Submit. A connect that the
// kernel refused carries the errno as an *os.SyscallError instead, so
// errors.Is(r.Err, syscall.ECONNREFUSED) works.
var (
	// ErrTimeout is the connector's own connect deadline. It is also
	// os.ErrDeadlineExceeded and context.DeadlineExceeded for errors.Is and
	// a net.Error with Timeout() true, so code that maps timeouts generically
	// (a SOCKS5 0x06 reply, an HTTP 504) recognises it.
	ErrTimeout   error = timeoutError{}
	ErrQueueFull       = errors.New("connector: queue full")
	ErrClosed          = errors.New("connector: pool closed")
	ErrCanceled        = errors.New("connector: request canceled")
	// ErrUpstreamsDown: every candidate upstream is marked down (see
	// Upstream). Submit returns it at once rather than queueing the
	// request behind connects that are known to time out.
	ErrUpstreamsDown = errors.New("connector: all upstreams down")

	// ErrInvalidRequest is returned by Submit for a request without
	// addresses or handler, or one that is still being worked on.
	ErrInvalidRequest = errors.New("connector: invalid request")
	// ErrInvalidConfig is wrapped by Config.Validate, naming the bad field.
	ErrInvalidConfig = errors.New("connector: invalid config")
)

// Class groups connect failures by cause, for counters and for the caller's
// close reason.
type Class int

const (
	ClassRefused      Class = iota // ECONNREFUSED: nothing listens, or the peer reset the SYN
	ClassTimeout                   // ErrTimeout (our deadline) or ETIMEDOUT (the kernel gave up)
	ClassUnreachable               // ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN
	ClassAddrNotAvail              // EADDRNOTAVAIL: typically no ephemeral port left
	ClassOther                     // anything else (EMFILE from socket(), ECONNRESET, ...)

	// NumClasses is the number of classes, for arrays indexed by Class.
	NumClasses = int(ClassOther) + 1
)

var classNames = [NumClasses]string{"refused", "timeout", "unreachable", "addrnotavail", "other"}

func (c Class) String() string {
	if c < 0 || int(c) >= NumClasses {
		return "other"
	}
	return classNames[c]
}

// Classify maps a connect error to its Class. nil, ErrCanceled and ErrClosed
// are not connect failures and classify as ClassOther.
func Classify(err error) Class {
	if err == nil {
		return ClassOther
	}
	if errors.Is(err, ErrTimeout) {
		return ClassTimeout
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return ClassOther
	}
	return classifyErrno(errno)
}

func classifyErrno(e syscall.Errno) Class {
	switch e {
	case syscall.ECONNREFUSED:
		return ClassRefused
	case syscall.ETIMEDOUT:
		return ClassTimeout
	case syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.EHOSTDOWN:
		return ClassUnreachable
	case syscall.EADDRNOTAVAIL:
		return ClassAddrNotAvail
	}
	return ClassOther
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "connector: connect timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == os.ErrDeadlineExceeded || target == context.DeadlineExceeded
}
