package httpconnect_test

import (
	"fmt"

	"github.com/relayd/relayd/edge/httpconnect"
)

func ExampleParse() {
	in := []byte("CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n\x16\x03\x01")
	req, n, err := httpconnect.Parse(in, httpconnect.Config{})
	fmt.Printf("%+v %d %v %q\n", req, n, err, in[n:])
	_, _, err = httpconnect.Parse([]byte("GET / HTTP/1.1\r\n"), httpconnect.Config{})
	fmt.Printf("%v -> %q\n", err, httpconnect.AppendError(nil, err)[:31])
	// Output:
	// {Host:example.test Addr:invalid AddrPort Port:443 User:} 61 <nil> "\x16\x03\x01"
	// httpconnect: method not allowed -> "HTTP/1.1 405 Method Not Allowed"
}
