package socks5_test

import (
	"fmt"
	"net/netip"

	"github.com/relayd/relayd/edge/socks5"
)

func ExampleServer_Feed() {
	srv := socks5.New(socks5.Config{}) // no authentication
	// curl --socks5-hostname: greeting, then CONNECT example.test:443 pipelined with payload.
	in := []byte{5, 2, 0, 1, 5, 1, 0, 3, 12, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 't', 'e', 's', 't', 1, 187, 'h', 'i'}
	n, out, err := srv.Feed(in, nil)
	fmt.Printf("consumed %d, reply % x, err %v, request %+v, payload %q\n", n, out, err, srv.Request(), in[n:])
	// After dialing, tell the client where we are bound.
	fmt.Printf("% x\n", socks5.AppendReply(nil, socks5.Succeeded, netip.MustParseAddrPort("127.0.0.1:40000")))
	// Output:
	// consumed 23, reply 05 00, err <nil>, request {Host:example.test Addr:invalid AddrPort Port:443}, payload "hi"
	// 05 00 00 01 7f 00 00 01 9c 40
}
