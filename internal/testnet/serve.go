package testnet

import (
	"net"
	"net/netip"
	"sync"
	"testing"
)

// Server runs a handler per connection on a loopback listener. Close (also
// run by the test's cleanup) stops accepting and waits for every handler.
type Server struct {
	ln   net.Listener
	wg   sync.WaitGroup
	once sync.Once
}

// Serve listens on network/addr (e.g. "tcp", "127.0.0.1:0") and runs handle
// for each accepted connection, closing the connection when handle returns.
func Serve(t testing.TB, network, addr string, handle func(net.Conn)) *Server {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// AddrPort is the listener's address as a netip.AddrPort.
func (s *Server) AddrPort() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// Close stops accepting and waits for every handler; safe to call twice.
func (s *Server) Close() {
	s.once.Do(func() { _ = s.ln.Close() })
	s.wg.Wait()
}
