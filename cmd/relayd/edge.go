package main

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
	"github.com/relayd/relayd/edge/proxyproto"
	"github.com/relayd/relayd/edge/resolve"
	"github.com/relayd/relayd/relay"
)

// edgeShared is what the edge listeners of one daemon share: the name
// resolver (started when the first socks5/http-connect listener needs it,
// closed by close) and relayd's own listen addresses, which every
// destination policy refuses. Each daemon has its own (two daemons in one
// process, as in tests, must not share a resolver one of them closes).
type edgeShared struct {
	mu       sync.Mutex // guards all below
	resCfg   resolve.Config
	resolver *resolve.Resolver
	self     []netip.AddrPort
}

// setup takes the global settings the edge listeners need from the config;
// newDaemon calls it before adding listeners, reload with the new config.
func (e *edgeShared) setup(c *configs.Config) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resCfg = resolve.Config{Workers: c.Resolver.Workers, Queue: c.Resolver.Queue, Timeout: c.Resolver.Timeout}
	e.self = e.self[:0]
	for _, l := range c.Listeners {
		if ap, err := netip.ParseAddrPort(normalizeListen(l.Listen)); err == nil && ap.Port() != 0 {
			e.self = append(e.self, ap)
		}
	}
}

// close stops the resolver once the relay no longer uses it.
func (e *edgeShared) close() {
	e.mu.Lock()
	r := e.resolver
	e.resolver = nil
	e.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

func (e *edgeShared) getResolver() (*resolve.Resolver, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resolver == nil {
		r, err := resolve.New(e.resCfg)
		if err != nil {
			return nil, err
		}
		e.resolver = r
	}
	return e.resolver, nil
}

var proxyVersions = map[string]proxyproto.Version{
	configs.ProxyNone: 0, configs.ProxyV1: proxyproto.V1, configs.ProxyV2: proxyproto.V2, configs.ProxyAny: proxyproto.Any,
}

// applyEdge maps a listener's edge settings (mode, PROXY protocol, ACLs,
// per-source limits, destination policy) onto its relay config. The config
// was validated, so errors here are about the world (an unreadable file).
func (e *edgeShared) apply(lc *relay.ListenerConfig, l configs.Listener) error {
	fail := func(key string, err error) error { return fmt.Errorf("listener %s: %s: %w", l.Name, key, err) }
	lc.Mode = l.Mode
	lc.HandshakeTimeout = l.HandshakeTimeout
	clientTarget := l.Mode == configs.ModeSOCKS5 || l.Mode == configs.ModeHTTPConnect

	if len(l.Auth.Users) > 0 || l.Auth.File != "" {
		v, err := verifier(l.Auth)
		if err != nil {
			return fail("auth", err)
		}
		lc.Verify = v
	}

	pp := l.ProxyProtocol
	lc.ProxyAccept, lc.ProxySend = proxyVersions[pp.Accept], proxyVersions[pp.Send]
	for _, s := range pp.TrustedSources {
		p, err := policy.ParsePrefix(s)
		if err != nil {
			return fail("proxy_protocol.trusted_sources", err)
		}
		lc.Trusted = append(lc.Trusted, p)
	}

	if len(l.ACL.Allow) > 0 || len(l.ACL.Deny) > 0 {
		acl, err := policy.NewSourceACL(l.ACL.Allow, l.ACL.Deny)
		if err != nil {
			return fail("acl", err)
		}
		lc.ACL = acl
	}
	if l.Limits.PerSourceSessions > 0 || l.Limits.PerSourceRate > 0 {
		lim, err := policy.NewSourceLimiter(policy.LimiterConfig{
			MaxConcurrent: l.Limits.PerSourceSessions,
			Rate:          float64(l.Limits.PerSourceRate),
		}, time.Now())
		if err != nil {
			return fail("limits", err)
		}
		lc.Limiter = lim
	}

	if !clientTarget {
		return nil
	}
	var pc policy.Config
	for _, s := range l.Policy.Allow {
		e, err := configs.ParsePolicyEntry(s)
		if err != nil {
			return fail("policy.allow", err)
		}
		pc.Allow = append(pc.Allow, e)
	}
	for _, s := range l.Policy.Deny {
		e, err := configs.ParsePolicyEntry(s)
		if err != nil {
			return fail("policy.deny", err)
		}
		pc.Deny = append(pc.Deny, e)
	}
	pol, err := policy.New(pc)
	if err != nil {
		return fail("policy", err)
	}
	e.mu.Lock()
	for _, ap := range e.self {
		pol.AddSelf(ap)
	}
	e.mu.Unlock()
	if lc.Addr.Port() != 0 {
		pol.AddSelf(lc.Addr)
	}
	lc.Policy = pol // relay also refuses the listener's bound port (port 0 in the config)
	if lc.Resolver, err = e.getResolver(); err != nil {
		return fail("resolver", err)
	}
	return nil
}

// verifier checks the inline users and the file's. Both are always asked,
// so the time taken does not say which list knows a user.
func verifier(a configs.Auth) (auth.Verifier, error) {
	var sets []*auth.Credentials
	if len(a.Users) > 0 {
		m := make(map[string]string, len(a.Users))
		for _, u := range a.Users {
			name, pass, _ := strings.Cut(u, ":")
			m[name] = pass
		}
		c, err := auth.NewCredentials(m)
		if err != nil {
			return nil, err
		}
		sets = append(sets, c)
	}
	if a.File != "" {
		c, err := auth.LoadCredentials(a.File)
		if err != nil {
			return nil, err
		}
		sets = append(sets, c)
	}
	if len(sets) == 1 {
		return sets[0].Verify, nil
	}
	return func(user, pass []byte) bool {
		ok0 := sets[0].Verify(user, pass)
		ok1 := sets[1].Verify(user, pass)
		return ok0 || ok1
	}, nil
}
