// Command gorelay is the reference Go relay of loadtest/compare.sh: a
// goroutine pair per session copying with io.Copy, which on Linux moves
// TCP-to-TCP bytes with splice(2) (net.TCPConn.ReadFrom). It is what a Go
// programmer writes first, so relayd's figures are set against it. Not part
// of relayd.
//
//	gorelay LISTEN UPSTREAM
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gorelay LISTEN UPSTREAM")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: back off, keep serving
			continue
		}
		go relay(c.(*net.TCPConn), os.Args[2])
	}
}

// relay copies both ways, forwarding each direction's EOF as a half-close.
func relay(c *net.TCPConn, upstream string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(u, c)
		_ = u.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, u)
	_ = c.CloseWrite()
	<-done
}
