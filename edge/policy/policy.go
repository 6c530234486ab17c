package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

var (
	// ErrBadCIDR means a config entry is not a valid CIDR or address.
	ErrBadCIDR = errors.New("policy: invalid CIDR")
	// ErrBadPorts means a port list is not "N", "N-M" or a comma list of those, within 1-65535.
	ErrBadPorts = errors.New("policy: invalid port list")
)

// Entry is one allow or deny rule from config.
type Entry struct {
	// Name labels the rule in Check results and metrics; empty means
	// "allow:<cidr>[:<ports>]" (or "deny:...").
	Name string
	// CIDR is a prefix ("10.1.0.0/16") or a single address ("127.0.0.1").
	CIDR string
	// Ports is "" (all ports), "443", "8000-8999", or a comma list "80,443,8000-8999".
	Ports string
}

// Config is the destination policy. The zero value allows every destination
// outside the default-denied ranges, on every port but 0.
type Config struct {
	// Allow, when non-empty, is the allow-list: a destination must match an
	// entry. An entry whose prefix lies inside a default-denied range
	// re-opens that part of it (e.g. 127.0.0.1/32 port 8080 for a test
	// upstream); a broader entry never does.
	Allow []Entry
	// Deny entries are checked before Allow and always win.
	Deny []Entry
}

// PortRange is an inclusive port range.
type PortRange struct{ Lo, Hi uint16 }

type rule struct {
	name   string
	prefix netip.Prefix
	ports  []PortRange // nil: all ports
}

func (r *rule) match(a netip.Addr, port uint16) bool {
	if !r.prefix.Contains(a) {
		return false
	}
	if r.ports == nil {
		return true
	}
	for _, pr := range r.ports {
		if port >= pr.Lo && port <= pr.Hi {
			return true
		}
	}
	return false
}

// Policy is an immutable destination policy (AddSelf aside, which must be
// done before the Policy is shared).
type Policy struct {
	allow, deny []rule
	self        []netip.AddrPort // exact listen addresses (normalized)
	selfAnyPort []uint16         // ports listened on an unspecified address
	local       []netip.Addr     // this host's interface addresses, for selfAnyPort
}

// New builds a Policy from cfg.
func New(cfg Config) (*Policy, error) {
	p := &Policy{}
	var err error
	if p.allow, err = buildRules(cfg.Allow, "allow"); err != nil {
		return nil, err
	}
	if p.deny, err = buildRules(cfg.Deny, "deny"); err != nil {
		return nil, err
	}
	return p, nil
}

func buildRules(es []Entry, kind string) ([]rule, error) {
	rs := make([]rule, 0, len(es))
	for _, e := range es {
		pfx, err := ParsePrefix(e.CIDR)
		if err != nil {
			return nil, err
		}
		ports, err := ParsePorts(e.Ports)
		if err != nil {
			return nil, err
		}
		name := e.Name
		if name == "" {
			name = kind + ":" + pfx.String()
			if e.Ports != "" {
				name += ":" + e.Ports
			}
		}
		rs = append(rs, rule{name: name, prefix: pfx, ports: ports})
	}
	return rs, nil
}

// ParsePrefix parses "a.b.c.d/n", "v6/n" or a bare address (a /32 or /128).
// IPv4-mapped prefixes are converted to IPv4, matching Check's normalization.
func ParsePrefix(s string) (netip.Prefix, error) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return pfx, fmt.Errorf("%w: %q: %w", ErrBadCIDR, s, err)
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pfx, fmt.Errorf("%w: %q", ErrBadCIDR, s)
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), nil
}

// ParsePorts parses a port list; "" means all ports (nil).
func ParsePorts(s string) ([]PortRange, error) {
	if s == "" {
		return nil, nil
	}
	var out []PortRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
		if err1 != nil || err2 != nil || l == 0 || l > h {
			return nil, fmt.Errorf("%w: %q", ErrBadPorts, s)
		}
		out = append(out, PortRange{uint16(l), uint16(h)})
	}
	return out, nil
}

// AddSelf registers one of relayd's own listen addresses, so clients cannot
// make relayd connect to itself (a loop that multiplies every byte). An
// unspecified address (0.0.0.0:p or [::]:p) covers port p on loopback, the
// unspecified address and every interface address of this host.
func (p *Policy) AddSelf(ap netip.AddrPort) {
	a, _ := normalize(ap.Addr().WithZone(""))
	if a.IsUnspecified() {
		p.selfAnyPort = append(p.selfAnyPort, ap.Port())
		if p.local == nil {
			p.local = interfaceAddrs()
		}
		return
	}
	p.self = append(p.self, netip.AddrPortFrom(a, ap.Port()))
}

func interfaceAddrs() []netip.Addr {
	out := []netip.Addr{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out // loopback and unspecified are still covered
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				norm, _ := normalize(ip.Unmap())
				out = append(out, norm)
			}
		}
	}
	return out
}

func (p *Policy) isSelf(a netip.Addr, port uint16) bool {
	for _, s := range p.self {
		if s.Port() == port && s.Addr() == a {
			return true
		}
	}
	for _, sp := range p.selfAnyPort {
		if sp != port {
			continue
		}
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		for _, l := range p.local {
			if l == a {
				return true
			}
		}
	}
	return false
}

// Rule names returned by Check for the built-in rules.
const (
	RuleInvalid     = "invalid"
	RulePortZero    = "port-zero"
	RuleSelf        = "self"
	RuleNotAllowed  = "not-allowed" // an allow-list is configured and nothing matched
	RuleDefault     = "default"     // allowed: no allow-list and no deny rule matched
	RuleLoopback    = "loopback"
	RulePrivate     = "private"
	RuleCGNAT       = "cgnat"
	RuleMetadata    = "metadata"
	RuleLinkLocal   = "link-local"
	RuleMulticast   = "multicast"
	RuleUnspecified = "unspecified"
	RuleULA         = "ula"
	RuleReserved    = "reserved"
)

var defaultDeny = func() []rule {
	spec := []struct{ name, cidr string }{
		{RuleUnspecified, "0.0.0.0/8"},
		{RuleLoopback, "127.0.0.0/8"},
		{RulePrivate, "10.0.0.0/8"},
		{RulePrivate, "172.16.0.0/12"},
		{RulePrivate, "192.168.0.0/16"},
		{RuleCGNAT, "100.64.0.0/10"},
		{RuleMetadata, "169.254.169.254/32"},
		{RuleLinkLocal, "169.254.0.0/16"},
		{RuleReserved, "192.0.0.0/24"},    // IETF protocol assignments
		{RuleReserved, "192.0.2.0/24"},    // TEST-NET-1
		{RuleReserved, "198.18.0.0/15"},   // benchmarking
		{RuleReserved, "198.51.100.0/24"}, // TEST-NET-2
		{RuleReserved, "203.0.113.0/24"},  // TEST-NET-3
		{RuleMulticast, "224.0.0.0/4"},
		{RuleReserved, "240.0.0.0/4"}, // incl. 255.255.255.255 broadcast
		{RuleUnspecified, "::/128"},
		{RuleLoopback, "::1/128"},
		{RuleReserved, "::/8"},           // other IETF-reserved low space
		{RuleReserved, "64:ff9b:1::/48"}, // local-use NAT64: translator-defined embedding
		{RuleReserved, "100::/64"},       // discard-only
		{RuleReserved, "2001::/23"},      // IETF protocol assignments incl. Teredo
		{RuleReserved, "2001:db8::/32"},  // documentation
		{RuleReserved, "fec0::/10"},      // deprecated site-local
		{RuleULA, "fc00::/7"},
		{RuleLinkLocal, "fe80::/10"},
		{RuleMulticast, "ff00::/8"},
	}
	rs := make([]rule, len(spec))
	for i, s := range spec {
		rs[i] = rule{name: s.name, prefix: netip.MustParsePrefix(s.cidr)}
	}
	return rs
}()

// normalize reduces an address to the IPv4 address it carries when it is
// one of the IPv6 spellings of IPv4: mapped, compatible, SIIT, well-known
// NAT64 prefix, 6to4. embedded is true for every form but mapped (which is
// the very same socket address as the IPv4 one).
func normalize(a netip.Addr) (n netip.Addr, embedded bool) {
	if a.Is4In6() {
		return a.Unmap(), false
	}
	if !a.Is6() {
		return a, false
	}
	b := a.As16()
	zero := func(s []byte) bool {
		for _, c := range s {
			if c != 0 {
				return false
			}
		}
		return true
	}
	switch {
	case zero(b[:12]) && !(zero(b[12:15]) && b[15] <= 1): // ::a.b.c.d, but not :: and ::1
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case zero(b[:8]) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0: // ::ffff:0:a.b.c.d
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(b[4:12]): // 64:ff9b::/96
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case b[0] == 0x20 && b[1] == 0x02: // 2002:V4ADDR::/48
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return a, false
}

func defaultRule(a netip.Addr) *rule {
	for i := range defaultDeny {
		if defaultDeny[i].prefix.Contains(a) {
			return &defaultDeny[i]
		}
	}
	return nil
}

// Check decides whether a client may connect to ap, and names the rule
// that decided. It does not allocate.
func (p *Policy) Check(ap netip.AddrPort) (rule string, ok bool) {
	a := ap.Addr().WithZone("")
	if !a.IsValid() {
		return RuleInvalid, false
	}
	port := ap.Port()
	if port == 0 {
		return RulePortZero, false
	}
	n, embedded := normalize(a)
	if p.isSelf(n, port) {
		return RuleSelf, false
	}
	for i := range p.deny {
		if p.deny[i].match(n, port) {
			return p.deny[i].name, false
		}
	}
	def := defaultRule(n)
	if def != nil && embedded {
		// A v4 address hidden in a v6 spelling is never re-allowed: the
		// allow entry names the v4 address, not a translator's route to it.
		return def.name, false
	}
	for i := range p.allow {
		r := &p.allow[i]
		if !r.match(n, port) {
			continue
		}
		if def != nil && !(r.prefix.Bits() >= def.prefix.Bits() && def.prefix.Contains(r.prefix.Addr())) {
			continue // too broad to re-open a default-denied range
		}
		return r.name, true
	}
	if def != nil {
		return def.name, false
	}
	if len(p.allow) > 0 {
		return RuleNotAllowed, false
	}
	return RuleDefault, true
}

// RuleNoAddress is returned by Pick when given no addresses.
const RuleNoAddress = "no-address"

// Pick returns the first of addrs (as resolved, in order) that Check allows
// on port, IPv4-mapped addresses unmapped. The caller must connect to
// exactly that AddrPort: resolving again could yield another address. When
// none is allowed it returns the rule that denied the first one.
func (p *Policy) Pick(addrs []netip.Addr, port uint16) (netip.AddrPort, string, bool) {
	first := RuleNoAddress
	for i, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		rule, ok := p.Check(ap)
		if ok {
			return ap, rule, true
		}
		if i == 0 {
			first = rule
		}
	}
	return netip.AddrPort{}, first, false
}
