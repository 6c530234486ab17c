package proxyproto_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/relayd/relayd/edge/proxyproto"
)

func ExampleParse() {
	// What HAProxy's send-proxy writes, then the client's first bytes.
	buf := []byte("PROXY TCP4 192.0.2.10 127.0.0.1 51234 8080\r\nGET / HTTP/1.1\r\n")
	for _, k := range []int{20, len(buf)} { // first a partial read, then the rest
		h, n, err := proxyproto.Parse(buf[:k], proxyproto.Any)
		if errors.Is(err, proxyproto.ErrNeedMore) {
			fmt.Println("need more")
			continue
		}
		fmt.Println(h.Src, h.Dst, n, fmt.Sprintf("%q", buf[n:k]))
	}
	// Output:
	// need more
	// 192.0.2.10:51234 127.0.0.1:8080 44 "GET / HTTP/1.1\r\n"
}

func ExampleAppendV2() {
	b, _ := proxyproto.AppendV2(nil, netip.MustParseAddrPort("192.0.2.10:51234"), netip.MustParseAddrPort("127.0.0.1:8080"))
	fmt.Printf("% x\n", b)
	// Output:
	// 0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 00 0c c0 00 02 0a 7f 00 00 01 c8 22 1f 90
}
