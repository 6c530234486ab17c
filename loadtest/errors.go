package loadtest

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// Sentinel errors. Test them with errors.Is.
var (
	ErrBadConfig = errors.New("loadtest: bad config")
	// ErrMismatch: the bytes read back differ from the bytes sent.
	ErrMismatch = errors.New("loadtest: data mismatch")
	// ErrShort: the peer closed before sending everything expected.
	ErrShort = errors.New("loadtest: short read (early EOF)")
	// ErrThreshold: a --max-errors or --max-p99 limit was breached.
	ErrThreshold = errors.New("loadtest: threshold breached")
)

// Error kinds, the keys of Result.Errors.
const (
	KindRefused      = "refused"
	KindTimeout      = "timeout"
	KindReset        = "reset"
	KindAddrNotAvail = "addrnotavail"
	KindMismatch     = "mismatch"
	KindShort        = "short"
	KindOther        = "other"
)

// ErrorKinds lists every kind Classify returns, in report order.
var ErrorKinds = []string{KindRefused, KindTimeout, KindReset, KindAddrNotAvail, KindMismatch, KindShort, KindOther}

// Classify maps an error from a session to one of the Kind constants,
// by errno where there is one.
func Classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return KindReset
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return KindAddrNotAvail
	case errors.Is(err, ErrMismatch):
		return KindMismatch
	case errors.Is(err, ErrShort), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return KindShort
	default:
		return KindOther
	}
}
