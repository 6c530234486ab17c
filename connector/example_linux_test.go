//go:build linux

package connector_test

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/connector"
)

// chanHandler hands results to another goroutine without blocking the
// worker, as the relay does with its loop's task queue.
type chanHandler chan *connector.Request

func (h chanHandler) Connected(r *connector.Request) { h <- r }

func Example() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	pool, err := connector.New(connector.Config{NoDelay: true})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	done := make(chanHandler, 1)
	up := ln.Addr().(*net.TCPAddr).AddrPort()
	req := &connector.Request{Addrs: []netip.AddrPort{up}, Handler: done, Cookie: 42}
	if err := pool.Submit(req); err != nil {
		panic(err) // ErrQueueFull: reject the client
	}
	r := <-done
	// The handler owns r.FD now.
	if r.FD >= 0 {
		unix.Close(r.FD)
	}
	fmt.Println(r.Err, r.Cookie, r.Attempts, r.Addr == up)
	// Output: <nil> 42 1 true
}
