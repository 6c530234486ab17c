package route

import (
	"fmt"
	"slices"
	"strings"
)

// Protocol is what the first bytes of a connection were.
type Protocol uint8

const (
	Other Protocol = iota // neither TLS nor HTTP/1.x
	TLS
	HTTP
)

var protocolNames = [...]string{Other: "other", TLS: "tls", HTTP: "http"}

func (p Protocol) String() string { return protocolNames[p] }

// Rule is one route as configured. Empty fields match anything.
type Rule struct {
	Name     string
	SNI      []string // server names: "a.example" or "*.a.example" (any name below it), case-insensitive
	ALPN     []string // any of these offered
	Host     []string // HTTP Host names, patterns as SNI (the port is not part of it)
	Protocol string   // "", "tls", "http" or "other"
}

// Input is what the relay read of a connection.
type Input struct {
	Protocol Protocol
	SNI      string   // lower-case
	ALPN     []string // offered
	Host     string   // lower-case, no port
}

// Table is a compiled, immutable list of rules.
type Table struct{ rules []rule }

type rule struct {
	name      string
	sni, host patterns
	alpn      []string
	proto     int8 // -1: any
}

// patterns are exact names and wildcard suffixes (".a.example" for
// "*.a.example").
type patterns struct {
	exact, suffix []string
	any           bool // no pattern given
}

func (p *patterns) match(name string) bool {
	if p.any {
		return true
	}
	if slices.Contains(p.exact, name) {
		return true
	}
	for _, s := range p.suffix {
		if len(name) > len(s) && strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// covers reports whether every name q matches is matched by p.
func (p *patterns) covers(q *patterns) bool {
	if p.any {
		return true
	}
	if q.any {
		return false
	}
	for _, e := range q.exact {
		if !p.match(e) {
			return false
		}
	}
	for _, s := range q.suffix {
		if !slices.ContainsFunc(p.suffix, func(ps string) bool { return strings.HasSuffix(s, ps) }) {
			return false
		}
	}
	return true
}

// Match returns the index of the first rule in names order that in
// matches, or -1 (the default group).
func (t *Table) Match(in *Input) int {
	for i := range t.rules {
		r := &t.rules[i]
		if r.proto >= 0 && Protocol(r.proto) != in.Protocol {
			continue
		}
		if !r.sni.any && (in.Protocol != TLS || !r.sni.match(in.SNI)) {
			continue
		}
		if !r.host.any && (in.Protocol != HTTP || !r.host.match(in.Host)) {
			continue
		}
		if r.alpn != nil && !slices.ContainsFunc(in.ALPN, func(p string) bool { return slices.Contains(r.alpn, p) }) {
			continue
		}
		return i
	}
	return -1
}

// Len is the number of rules.
func (t *Table) Len() int { return len(t.rules) }

// Name is rule i's name.
func (t *Table) Name(i int) string { return t.rules[i].name }

// Default is the name the default group goes by (a rule may not take it).
const Default = "default"

// Compile checks rules and builds their table. Errors name the rule as
// "routes[i] (name)".
func Compile(rules []Rule) (*Table, error) {
	t := &Table{}
	seen := map[string]int{}
	for i, r := range rules {
		at := fmt.Sprintf("routes[%d] (%s)", i, r.Name)
		if !validName(r.Name) {
			return nil, fmt.Errorf("routes[%d]: name %q: want 1-64 of letters, digits, '-', '_', '.' (and not %q)", i, r.Name, Default)
		}
		if j, dup := seen[r.Name]; dup {
			return nil, fmt.Errorf("%s: the name of routes[%d] too", at, j)
		}
		seen[r.Name] = i
		c := rule{name: r.Name, proto: -1}
		switch r.Protocol {
		case "":
		case "tls":
			c.proto = int8(TLS)
		case "http":
			c.proto = int8(HTTP)
		case "other":
			c.proto = int8(Other)
		default:
			return nil, fmt.Errorf("%s: protocol %q: want tls, http or other", at, r.Protocol)
		}
		var err error
		if c.sni, err = compilePatterns(r.SNI); err != nil {
			return nil, fmt.Errorf("%s: sni: %w", at, err)
		}
		if c.host, err = compilePatterns(r.Host); err != nil {
			return nil, fmt.Errorf("%s: host: %w", at, err)
		}
		for _, p := range r.ALPN {
			if p == "" || len(p) > 255 {
				return nil, fmt.Errorf("%s: alpn %q: want 1-255 bytes", at, p)
			}
		}
		c.alpn = slices.Clone(r.ALPN)
		tlsOnly := !c.sni.any || c.alpn != nil
		switch {
		case tlsOnly && !c.host.any:
			return nil, fmt.Errorf("%s: never matches: sni and alpn are TLS, host is plaintext HTTP", at)
		case tlsOnly && c.proto >= 0 && Protocol(c.proto) != TLS:
			return nil, fmt.Errorf("%s: never matches: sni and alpn are TLS, protocol is %s", at, r.Protocol)
		case !c.host.any && c.proto >= 0 && Protocol(c.proto) != HTTP:
			return nil, fmt.Errorf("%s: never matches: host is HTTP, protocol is %s", at, r.Protocol)
		}
		for j := range t.rules {
			if t.rules[j].covers(&c) {
				return nil, fmt.Errorf("%s is never reached: routes[%d] (%s) before it matches everything it would", at, j, t.rules[j].name)
			}
		}
		t.rules = append(t.rules, c)
	}
	return t, nil
}

// covers reports whether every connection q matches is matched by r.
func (r *rule) covers(q *rule) bool {
	if r.proto >= 0 && r.proto != q.effectiveProto() {
		return false
	}
	if !r.sni.covers(&q.sni) || !r.host.covers(&q.host) {
		return false
	}
	if r.alpn != nil && (q.alpn == nil || slices.ContainsFunc(q.alpn, func(p string) bool { return !slices.Contains(r.alpn, p) })) {
		return false
	}
	return true
}

// effectiveProto is the protocol every connection q matches has (-1: any).
func (q *rule) effectiveProto() int8 {
	switch {
	case q.proto >= 0:
		return q.proto
	case !q.sni.any || q.alpn != nil:
		return int8(TLS)
	case !q.host.any:
		return int8(HTTP)
	}
	return -1
}

func validName(s string) bool {
	if s == "" || len(s) > 64 || s == Default {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// compilePatterns checks and lower-cases names: each a DNS name (labels of
// letters, digits, '-', '_'), or "*." and one (any name strictly below it).
func compilePatterns(ps []string) (patterns, error) {
	out := patterns{any: len(ps) == 0}
	for _, p := range ps {
		l := strings.ToLower(p)
		wild := strings.HasPrefix(l, "*.")
		name := strings.TrimPrefix(l, "*.")
		if !validHostname(name) {
			return out, fmt.Errorf("%q: want a name like a.example or *.a.example", p)
		}
		if wild {
			out.suffix = append(out.suffix, "."+name)
		} else {
			out.exact = append(out.exact, name)
		}
	}
	return out, nil
}

func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
