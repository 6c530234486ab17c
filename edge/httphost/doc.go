// Package httphost reads the host a plaintext HTTP/1.x request is for —
// its Host header, or the authority of an absolute-form target — from the
// first bytes a client sent, without consuming them: relayd routes on it
// and forwards the request byte for byte.
//
// Like the other edge parsers it is incremental and stateless: Parse takes
// the bytes so far and answers ErrNeedMore (a valid prefix), the host, or
// an error. It reads only as far as it must: the request line and the
// header lines up to Host (or the end of the head when there is none), and
// checks what a router relies on — a method token, a target, an
// HTTP/1.0 or 1.1 version, header names that are tokens, no obsolete line
// folding, at most one Host, a Host that is a valid authority. Everything
// after is the upstream's business. net/http's reader cannot serve here: it
// reads from a blocking io.Reader and consumes what it parses.
package httphost
