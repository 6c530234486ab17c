//go:build linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// accept4 decodes the client's address itself (no heap Sockaddr): the port
// in network byte order and the address, for IPv4 and IPv6, must equal what
// the client sees as its own address; an empty queue is EAGAIN.
func TestAccept4ClientAddress(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		ap := netip.MustParseAddrPort(listen)
		fd, bound, err := listenTCP(ap, false, 16)
		if err != nil {
			if ap.Addr().Is6() {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		if _, _, err := accept4(fd); !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("%s: accept on an empty queue: %v, want EAGAIN", listen, err)
		}
		c, err := net.Dial("tcp", bound.String())
		if err != nil {
			t.Fatal(err)
		}
		want := c.LocalAddr().(*net.TCPAddr).AddrPort()
		var nfd int
		var got netip.AddrPort
		for range 1000 { // a loopback connect is queued once Dial returns: the first try takes it
			if nfd, got, err = accept4(fd); !errors.Is(err, unix.EAGAIN) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
			t.Fatalf("%s: accept4 says the client is %v, the client says %v", listen, got, want)
		}
		unix.Close(nfd)
		c.Close()
		unix.Close(fd)
	}
}
