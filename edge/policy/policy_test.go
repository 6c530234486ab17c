package policy

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

var ap = netip.MustParseAddrPort

func mustPolicy(t *testing.T, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckDefaults(t *testing.T) {
	p := mustPolicy(t, Config{})
	for _, tc := range []struct {
		dst  string
		rule string
		ok   bool
	}{
		{"127.0.0.1:80", RuleLoopback, false},
		{"127.255.255.254:80", RuleLoopback, false},
		{"10.0.0.1:80", RulePrivate, false},
		{"172.16.5.4:80", RulePrivate, false},
		{"172.31.255.255:80", RulePrivate, false},
		{"192.168.1.1:80", RulePrivate, false},
		{"100.64.1.1:80", RuleCGNAT, false},
		{"169.254.169.254:80", RuleMetadata, false},
		{"169.254.1.1:80", RuleLinkLocal, false},
		{"0.0.0.0:80", RuleUnspecified, false},
		{"0.1.2.3:80", RuleUnspecified, false},
		{"224.0.0.1:80", RuleMulticast, false},
		{"255.255.255.255:80", RuleReserved, false},
		{"192.0.2.1:80", RuleReserved, false},
		{"198.51.100.1:80", RuleReserved, false},
		{"203.0.113.1:80", RuleReserved, false},
		{"198.18.0.1:80", RuleReserved, false},
		{"[::1]:80", RuleLoopback, false},
		{"[::]:80", RuleUnspecified, false},
		{"[::ffff:127.0.0.1]:80", RuleLoopback, false},
		{"[::ffff:10.0.0.1]:80", RulePrivate, false},
		{"[::ffff:169.254.169.254]:80", RuleMetadata, false},
		{"[::127.0.0.1]:80", RuleLoopback, false},        // IPv4-compatible
		{"[::ffff:0:127.0.0.1]:80", RuleLoopback, false}, // SIIT
		{"[64:ff9b::10.0.0.1]:80", RulePrivate, false},   // NAT64
		{"[64:ff9b::169.254.169.254]:80", RuleMetadata, false},
		{"[2002:7f00:1::1]:80", RuleLoopback, false}, // 6to4 of 127.0.0.1
		{"[64:ff9b:1::1]:80", RuleReserved, false},
		{"[fe80::1]:80", RuleLinkLocal, false},
		{"[fe80::1%eth0]:80", RuleLinkLocal, false},
		{"[fd00:ec2::254]:80", RuleULA, false},
		{"[fc00::1]:80", RuleULA, false},
		{"[ff02::1]:80", RuleMulticast, false},
		{"[2001:db8::1]:80", RuleReserved, false},
		{"[2001::1]:80", RuleReserved, false}, // Teredo
		{"1.1.1.1:0", RulePortZero, false},
		{"1.1.1.1:443", RuleDefault, true},
		{"8.8.8.8:53", RuleDefault, true},
		{"[::ffff:1.1.1.1]:443", RuleDefault, true},
		{"[2606:4700:4700::1111]:443", RuleDefault, true},
		{"[64:ff9b::1.1.1.1]:443", RuleDefault, true},
		{"[2002:101:101::1]:443", RuleDefault, true},
	} {
		rule, ok := p.Check(ap(tc.dst))
		if rule != tc.rule || ok != tc.ok {
			t.Errorf("Check(%s) = %q %v, want %q %v", tc.dst, rule, ok, tc.rule, tc.ok)
		}
	}
	if rule, ok := p.Check(netip.AddrPort{}); ok || rule != RuleInvalid {
		t.Errorf("invalid: %q %v", rule, ok)
	}
}

func TestCheckAllowDeny(t *testing.T) {
	p := mustPolicy(t, Config{
		Allow: []Entry{
			{CIDR: "127.0.0.1/32", Ports: "8080"},
			{Name: "web", CIDR: "0.0.0.0/0", Ports: "80,443,8000-8999"},
			{CIDR: "::1", Ports: "9000-9001"},
		},
		Deny: []Entry{{Name: "no-cf", CIDR: "1.1.1.0/24"}},
	})
	for _, tc := range []struct {
		dst  string
		rule string
		ok   bool
	}{
		{"127.0.0.1:8080", "allow:127.0.0.1/32:8080", true},
		{"[::ffff:127.0.0.1]:8080", "allow:127.0.0.1/32:8080", true}, // same socket address
		{"127.0.0.1:8081", RuleLoopback, false},                      // "web" is too broad to re-open loopback
		{"127.0.0.2:8080", RuleLoopback, false},
		{"[::127.0.0.1]:8080", RuleLoopback, false}, // embedded forms are never re-opened
		{"[64:ff9b::7f00:1]:8080", RuleLoopback, false},
		{"10.0.0.1:443", RulePrivate, false},
		{"[::1]:9001", "allow:::1/128:9000-9001", true},
		{"[::1]:9002", RuleLoopback, false},
		{"8.8.8.8:443", "web", true},
		{"8.8.8.8:8500", "web", true},
		{"8.8.8.8:22", RuleNotAllowed, false},
		{"[2606:4700:4700::1111]:443", RuleNotAllowed, false}, // web is IPv4 only
		{"1.1.1.1:443", "no-cf", false},                       // deny wins
	} {
		rule, ok := p.Check(ap(tc.dst))
		if rule != tc.rule || ok != tc.ok {
			t.Errorf("Check(%s) = %q %v, want %q %v", tc.dst, rule, ok, tc.rule, tc.ok)
		}
	}
	// A prefix equal to a default range re-opens all of it.
	p2 := mustPolicy(t, Config{Allow: []Entry{{CIDR: "10.0.0.0/8"}}})
	if rule, ok := p2.Check(ap("10.9.8.7:22")); !ok || rule != "allow:10.0.0.0/8" {
		t.Errorf("10/8 allow: %q %v", rule, ok)
	}
}

func TestSelf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	own := ln.Addr().(*net.TCPAddr).AddrPort()
	p := mustPolicy(t, Config{Allow: []Entry{{CIDR: "127.0.0.0/8"}}})
	p.AddSelf(own)
	p.AddSelf(ap("[::]:3128"))
	for _, tc := range []struct {
		dst  netip.AddrPort
		rule string
		ok   bool
	}{
		{own, RuleSelf, false},
		{netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), own.Port()), RuleSelf, false},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), own.Port()), "allow:127.0.0.0/8", true},
		{ap("127.0.0.1:3128"), RuleSelf, false},
		{ap("127.8.9.10:3128"), RuleSelf, false},
		{ap("[::1]:3128"), RuleSelf, false},
		{ap("0.0.0.0:3128"), RuleSelf, false},
		{ap("127.0.0.1:3129"), "allow:127.0.0.0/8", true},
	} {
		rule, ok := p.Check(tc.dst)
		if rule != tc.rule || ok != tc.ok {
			t.Errorf("Check(%v) = %q %v, want %q %v", tc.dst, rule, ok, tc.rule, tc.ok)
		}
	}
	// Every interface address of this host is "self" on the wildcard port.
	for _, a := range p.local {
		if rule, _ := p.Check(netip.AddrPortFrom(a, 3128)); rule != RuleSelf {
			t.Errorf("interface address %v: %q", a, rule)
		}
	}
}

func TestPick(t *testing.T) {
	p := mustPolicy(t, Config{})
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	for _, tc := range []struct {
		in   []netip.Addr
		want netip.AddrPort
		rule string
		ok   bool
	}{
		{addrs("127.0.0.1", "1.1.1.1"), ap("1.1.1.1:443"), RuleDefault, true},
		{addrs("::ffff:1.1.1.1"), ap("1.1.1.1:443"), RuleDefault, true},
		{addrs("127.0.0.1"), netip.AddrPort{}, RuleLoopback, false},
		{addrs("10.0.0.1", "::1"), netip.AddrPort{}, RulePrivate, false},
		{nil, netip.AddrPort{}, RuleNoAddress, false},
	} {
		got, rule, ok := p.Pick(tc.in, 443)
		if got != tc.want || rule != tc.rule || ok != tc.ok {
			t.Errorf("Pick(%v) = %v %q %v, want %v %q %v", tc.in, got, rule, ok, tc.want, tc.rule, tc.ok)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{Allow: []Entry{{CIDR: "10.0.0.0/33"}}}, ErrBadCIDR},
		{Config{Allow: []Entry{{CIDR: "example.com"}}}, ErrBadCIDR},
		{Config{Allow: []Entry{{CIDR: "fe80::1%eth0"}}}, ErrBadCIDR},
		{Config{Deny: []Entry{{CIDR: "1.2.3.4", Ports: "0"}}}, ErrBadPorts},
		{Config{Deny: []Entry{{CIDR: "1.2.3.4", Ports: "90-80"}}}, ErrBadPorts},
		{Config{Deny: []Entry{{CIDR: "1.2.3.4", Ports: "65536"}}}, ErrBadPorts},
		{Config{Deny: []Entry{{CIDR: "1.2.3.4", Ports: "80,"}}}, ErrBadPorts},
	} {
		if _, err := New(tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("New(%+v) = %v, want %v", tc.cfg, err, tc.want)
		}
	}
	pfx, err := ParsePrefix("::ffff:10.0.0.0/104")
	if err != nil || pfx != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("mapped prefix: %v %v", pfx, err)
	}
}

func TestSourceACL(t *testing.T) {
	var none *SourceACL
	if _, ok := none.Check(netip.MustParseAddr("10.0.0.1")); !ok {
		t.Fatal("nil ACL must allow")
	}
	a, err := NewSourceACL([]string{"127.0.0.0/8", "2001:db8::/32"}, []string{"127.0.0.66"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		rule string
		ok   bool
	}{
		{"127.0.0.1", RuleACLAllow, true},
		{"::ffff:127.0.0.1", RuleACLAllow, true},
		{"127.0.0.66", RuleACLDeny, false},
		{"::ffff:127.0.0.66", RuleACLDeny, false},
		{"2001:db8::5", RuleACLAllow, true},
		{"10.0.0.1", RuleACLNotAllowed, false},
	} {
		rule, ok := a.Check(netip.MustParseAddr(tc.ip))
		if rule != tc.rule || ok != tc.ok {
			t.Errorf("Check(%s) = %q %v, want %q %v", tc.ip, rule, ok, tc.rule, tc.ok)
		}
	}
	if _, err := NewSourceACL([]string{"bogus"}, nil); !errors.Is(err, ErrBadCIDR) {
		t.Errorf("bad CIDR: %v", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	p, _ := New(Config{Allow: []Entry{{CIDR: "127.0.0.1/32", Ports: "8080"}, {CIDR: "0.0.0.0/0", Ports: "443"}}})
	p.AddSelf(ap("127.0.0.1:1080"))
	dst := ap("93.184.215.14:443")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.Check(dst); !ok {
			b.Fatal("denied")
		}
	}
}
