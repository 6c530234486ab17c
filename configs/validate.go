package configs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relayd/relayd/edge/auth"
	"github.com/relayd/relayd/edge/policy"
)

// FieldError is one bad key or value. Key is the full key path as written in
// the file ("relay.buffer_size", "listeners[0].upstreams[1]") or, for an
// environment variable that names no key, the variable's name.
type FieldError struct {
	Key    string
	Value  any // nil when the problem is the key itself, or a missing value
	Reason string
}

// Error reads key first, then value, then why:
// `relay.buffer_size: -1: must be between 1024 and 16777216`.
func (e *FieldError) Error() string {
	if e.Value == nil {
		return e.Key + ": " + e.Reason
	}
	return e.Key + ": " + formatValue(e.Value) + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case time.Duration:
		return formatDuration(x)
	}
	return fmt.Sprint(v)
}

func joinFieldErrors(errs []*FieldError) error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// Validate checks every value and returns all problems found, each a
// *FieldError, joined with errors.Join; nil if the config is usable. It does
// not change c: call SetDefaults first on a Config built in code.
func (c *Config) Validate() error {
	if errs := c.validate(); len(errs) > 0 {
		return joinFieldErrors(errs)
	}
	return nil
}

// Bounds. They are generous; their job is to catch typos and units mixed up
// (buffer_size: 32 meaning KiB), not to tune.
const (
	minBufferSize = 1 << 10
	maxBufferSize = 16 << 20
	maxLoops      = 1024
	// MaxProcesses bounds processes: the master holds one socket per worker
	// and listener, and the shared session table has a row per worker.
	MaxProcesses = 256
	maxWorkers   = 256
	maxInflight  = 1 << 16
	maxQueue     = 1 << 20
	maxBacklog   = 65535
	minRingSize  = 64
	maxRingSize  = 1 << 22
	maxRetries   = 16
	minTimeout   = time.Millisecond
	maxTimeout   = 24 * time.Hour
	maxIdle      = 7 * 24 * time.Hour
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

type validator struct{ errs []*FieldError }

func (v *validator) add(key string, val any, reason string, args ...any) {
	if len(args) > 0 {
		reason = fmt.Sprintf(reason, args...)
	}
	v.errs = append(v.errs, &FieldError{Key: key, Value: val, Reason: reason})
}

func (v *validator) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.add(key, n, "must be between %d and %d", lo, hi)
	}
}

func (v *validator) durRange(key string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.add(key, d, "must be between %s and %s", formatDuration(lo), formatDuration(hi))
	}
}

func (v *validator) oneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.add(key, s, "must be one of: %s", strings.Join(allowed, ", "))
}

func (c *Config) validate() []*FieldError {
	v := &validator{}
	c.validateListeners(v)

	v.intRange("connector.workers", c.Connector.Workers, 1, maxWorkers)
	v.intRange("connector.max_inflight", c.Connector.MaxInflight, 1, maxInflight)
	v.intRange("connector.queue", c.Connector.Queue, 1, maxQueue)
	v.durRange("connector.connect_timeout", c.Connector.ConnectTimeout, minTimeout, maxTimeout)
	v.oneOf("connector.pacing", c.Connector.Pacing, PacingAdaptive, PacingFixed)
	v.intRange("connector.upstream_max_inflight", c.Connector.UpstreamMaxInflight, 1, maxInflight)
	v.intRange("connector.upstream_queue", c.Connector.UpstreamQueue, 1, maxQueue)
	v.intRange("connector.health.fail_after", c.Connector.Health.FailAfter, 0, 1000)
	v.durRange("connector.health.backoff", c.Connector.Health.Backoff, minTimeout, maxTimeout)
	v.durRange("connector.health.backoff_max", c.Connector.Health.BackoffMax, minTimeout, maxTimeout)
	if h := c.Connector.Health; h.BackoffMax < h.Backoff {
		v.add("connector.health.backoff_max", h.BackoffMax, "must not be shorter than connector.health.backoff (%s)", formatDuration(h.Backoff))
	}

	if c.Processes != ProcessesAuto {
		v.intRange("processes", int(c.Processes), 1, MaxProcesses)
	}

	v.intRange("relay.loops", c.Relay.Loops, 0, maxLoops)
	v.intRange("relay.buffer_size", c.Relay.BufferSize, minBufferSize, maxBufferSize)
	v.durRange("relay.idle_timeout", c.Relay.IdleTimeout, minTimeout, maxIdle)
	v.durRange("relay.fin_timeout", c.Relay.FinTimeout, minTimeout, maxTimeout)
	v.oneOf("relay.splice", c.Relay.Splice, SpliceAuto, SpliceOff)
	v.intRange("relay.splice_pipes", c.Relay.SplicePipes, 1, 4096)
	v.intRange("relay.splice_pipe_size", c.Relay.SplicePipeSize, 4096, maxBufferSize)
	if c.Relay.TrimAfter != 0 {
		v.durRange("relay.trim_after", c.Relay.TrimAfter, 100*time.Millisecond, time.Hour)
	}

	v.oneOf("accept.mode", c.Accept.Mode, AcceptReusePort, AcceptSingle, AcceptBalanced)
	v.intRange("accept.backlog", c.Accept.Backlog, 1, maxBacklog)

	if c.Limits.MaxSessions < -1 {
		v.add("limits.max_sessions", c.Limits.MaxSessions, "must be 0 (from the open-file limit), -1 (no cap) or a positive cap")
	}
	v.durRange("shutdown.timeout", c.Shutdown.Timeout, 0, maxTimeout)

	v.intRange("resolver.workers", c.Resolver.Workers, 1, maxWorkers)
	v.intRange("resolver.queue", c.Resolver.Queue, 1, maxQueue)
	v.durRange("resolver.timeout", c.Resolver.Timeout, minTimeout, time.Minute)

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")
	if strings.TrimSpace(c.Log.Output) == "" {
		v.add("log.output", c.Log.Output, "must be stderr, stdout or a file path")
	}
	v.intRange("log.ring_size", c.Log.RingSize, minRingSize, maxRingSize)
	v.intRange("log.max_size_mb", c.Log.MaxSizeMB, 1, 1<<20)
	v.intRange("log.max_backups", c.Log.MaxBackups, 0, 10000)
	v.intRange("log.max_age_days", c.Log.MaxAgeDays, 0, 36500)
	if c.Log.AccessInterval != 0 {
		v.durRange("log.access_interval", c.Log.AccessInterval, time.Second, 24*time.Hour)
	}

	if t := c.Admin.Token; t != "" && len(t) < 16 {
		v.add("admin.token", RedactedPassword, "%d characters: a token needs at least 16", len(t))
	}
	if s := c.Admin.Socket; s != "" && s != SocketOff && !strings.HasPrefix(s, "/") {
		v.add("admin.socket", s, "an absolute path, \"\" (the runtime directory's) or %q", SocketOff)
	}
	if c.Admin.Listen != "" {
		ap, err := parseListen(c.Admin.Listen)
		switch {
		case err != nil:
			v.add("admin.listen", c.Admin.Listen, "%v", err)
		case !ap.Addr().IsLoopback() && !c.Admin.AllowRemote:
			v.add("admin.listen", c.Admin.Listen, "not a loopback address; set admin.allow_remote: true to expose the admin endpoint")
		default:
			for i, l := range c.Listeners {
				if lp, err := parseListen(l.Listen); err == nil && conflicts(ap, lp) {
					v.add("admin.listen", c.Admin.Listen, "same address as listeners[%d].listen", i)
				}
			}
		}
	}
	return v.errs
}

func (c *Config) validateListeners(v *validator) {
	if len(c.Listeners) == 0 {
		v.add("listeners", nil, "at least one listener is required (use --listen/--upstream or a config file)")
		return
	}
	names := map[string]int{}
	bound := map[int]netip.AddrPort{}
	for i, l := range c.Listeners {
		p := "listeners[" + strconv.Itoa(i) + "]."
		switch j, dup := names[l.Name]; {
		case !nameRE.MatchString(l.Name):
			v.add(p+"name", l.Name, "must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
		case dup:
			v.add(p+"name", l.Name, "same name as listeners[%d]", j)
		default:
			names[l.Name] = i
		}

		if ap, err := parseListen(l.Listen); err != nil {
			v.add(p+"listen", l.Listen, "%v", err)
		} else {
			for j := range i {
				if bp, ok := bound[j]; ok && conflicts(ap, bp) {
					v.add(p+"listen", l.Listen, "overlaps listeners[%d].listen %q", j, c.Listeners[j].Listen)
					break
				}
			}
			bound[i] = ap
		}

		switch l.Mode {
		case ModeForward:
			if len(l.Upstreams) == 0 {
				v.add(p+"upstreams", l.Upstreams, "at least one upstream is required")
			}
		case ModeSOCKS5, ModeHTTPConnect:
			if len(l.Upstreams) > 0 {
				v.add(p+"upstreams", l.Upstreams, "must be empty in mode %s: the client names its target", l.Mode)
			}
		default:
			v.add(p+"mode", l.Mode, "must be one of: %s, %s, %s", ModeForward, ModeSOCKS5, ModeHTTPConnect)
		}
		validateEdge(v, p, &l)
		validateRoutes(v, p, &l)
		validateGroup(v, p, l.Upstreams, l.Balance, l.Weights, l.Check, l.Retries)
		if l.MaxSessions < 0 {
			v.add(p+"max_sessions", l.MaxSessions, "must be 0 (no per-listener cap) or more")
		}
	}
}

// validateGroup checks an upstream group's keys under p: a listener's own
// upstreams, or one of its routes'.
func validateGroup(v *validator, p string, ups []string, balance string, weights []int, check Check, retries int) {
	for j, u := range ups {
		if err := checkUpstream(u); err != nil {
			v.add(p+"upstreams["+strconv.Itoa(j)+"]", u, "%v", err)
		}
	}
	v.oneOf(p+"balance", balance, BalanceRoundRobin, BalanceLeastConn)
	if len(weights) > 0 && len(weights) != len(ups) {
		v.add(p+"weights", weights, "needs one weight per upstream (%d), or none", len(ups))
	}
	for j, w := range weights {
		v.intRange(p+"weights["+strconv.Itoa(j)+"]", w, 1, 256)
	}
	validateCheck(v, p+"check.", check)
	v.intRange(p+"retries", retries, 0, maxRetries)
}

// splitHostPort is net.SplitHostPort plus a numeric port check: service
// names ("http") would need a lookup.
func splitHostPort(s string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, errors.New("must be host:port (an IPv6 host in brackets: [::1]:7000)")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q must be a number from 0 to 65535", port)
	}
	return host, uint16(n), nil
}

// parseListen accepts "ip:port" and ":port" (all addresses; returned as the
// IPv6 unspecified address, which on Linux also takes IPv4). Port 0 asks the
// kernel for a free port.
func parseListen(s string) (netip.AddrPort, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if host == "" {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), port), nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("host %q must be an IP address or empty for all addresses (names are not resolved)", host)
	}
	return netip.AddrPortFrom(addr, port), nil
}

// conflicts reports whether two listen addresses would take the same port:
// equal, or one is a wildcard of the same port. Port 0 never conflicts.
func conflicts(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() || a.Port() == 0 {
		return false
	}
	aa, ba := a.Addr().Unmap(), b.Addr().Unmap()
	return aa == ba || aa.IsUnspecified() || ba.IsUnspecified()
}

func checkUpstream(s string) error {
	host, port, err := splitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("host is required")
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("host %q must be an IP address (names are not resolved yet)", host)
	}
	if addr.Unmap().IsUnspecified() {
		return fmt.Errorf("host %s is the unspecified address; name the host to connect to", host)
	}
	if port == 0 {
		return errors.New("port must be from 1 to 65535")
	}
	return nil
}

// validateEdge checks a listener's edge settings (p is "listeners[i].").
func validateEdge(v *validator, p string, l *Listener) {
	forward := l.Mode == ModeForward
	v.durRange(p+"handshake_timeout", l.HandshakeTimeout, minTimeout, time.Hour)

	if forward && (len(l.Auth.Users) > 0 || l.Auth.File != "") {
		v.add(p+"auth", nil, "only for mode %s or %s", ModeSOCKS5, ModeHTTPConnect)
	}
	users := map[string]string{}
	for i, u := range l.Auth.Users {
		key := p + "auth.users[" + strconv.Itoa(i) + "]"
		name, pass, ok := strings.Cut(u, ":")
		if !ok {
			v.add(key, "(hidden)", `must be "user:password"`)
			continue
		}
		if _, dup := users[name]; dup {
			v.add(key, name, "duplicate user")
			continue
		}
		if _, err := auth.NewCredentials(map[string]string{name: pass}); err != nil {
			v.add(key, name, "%v", err)
			continue
		}
		users[name] = pass
	}
	if l.Auth.File != "" {
		if _, err := auth.LoadCredentials(l.Auth.File); err != nil {
			v.add(p+"auth.file", l.Auth.File, "%v", err)
		}
	}

	pp := &l.ProxyProtocol
	v.oneOf(p+"proxy_protocol.accept", pp.Accept, ProxyNone, ProxyV1, ProxyV2, ProxyAny)
	v.oneOf(p+"proxy_protocol.send", pp.Send, ProxyNone, ProxyV1, ProxyV2)
	if pp.Accept != ProxyNone && len(pp.TrustedSources) == 0 {
		v.add(p+"proxy_protocol.trusted_sources", nil, "required when proxy_protocol.accept is %q: only these peers may claim another address", pp.Accept)
	}
	prefixes(v, p+"proxy_protocol.trusted_sources", pp.TrustedSources)
	if _, err := ParseAddrList(l.Source); err != nil {
		v.add(p+"source", l.Source, "%v", err)
	}
	prefixes(v, p+"acl.allow", l.ACL.Allow)
	prefixes(v, p+"acl.deny", l.ACL.Deny)

	if l.Limits.PerSourceSessions < 0 {
		v.add(p+"limits.per_source_sessions", l.Limits.PerSourceSessions, "must be 0 (unlimited) or more")
	}
	if l.Limits.PerSourceRate < 0 || l.Limits.PerSourceRate > 1_000_000 {
		v.add(p+"limits.per_source_rate", l.Limits.PerSourceRate, "must be between 0 (unlimited) and 1000000")
	}

	if forward && (len(l.Policy.Allow) > 0 || len(l.Policy.Deny) > 0) {
		v.add(p+"policy", nil, "only for mode %s or %s (forward targets are the upstreams)", ModeSOCKS5, ModeHTTPConnect)
	}
	for _, list := range []struct {
		key     string
		entries []string
	}{{p + "policy.allow", l.Policy.Allow}, {p + "policy.deny", l.Policy.Deny}} {
		for i, e := range list.entries {
			if _, err := ParsePolicyEntry(e); err != nil {
				v.add(list.key+"["+strconv.Itoa(i)+"]", e, "%v", err)
			}
		}
	}
}

func prefixes(v *validator, key string, list []string) {
	for i, s := range list {
		if _, err := policy.ParsePrefix(s); err != nil {
			v.add(key+"["+strconv.Itoa(i)+"]", s, "must be a CIDR (10.0.0.0/8) or an IP address")
		}
	}
}

// ParsePolicyEntry parses a policy entry: "CIDR" or "CIDR PORTS".
func ParsePolicyEntry(s string) (policy.Entry, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return policy.Entry{}, errors.New(`must be "CIDR" or "CIDR PORTS", e.g. "127.0.0.1/32 8080"`)
	}
	e := policy.Entry{CIDR: f[0]}
	if _, err := policy.ParsePrefix(f[0]); err != nil {
		return e, fmt.Errorf("%q is not a CIDR or IP address", f[0])
	}
	if len(f) == 2 {
		e.Ports = f[1]
		if _, err := policy.ParsePorts(f[1]); err != nil {
			return e, fmt.Errorf("ports %q must be a comma list of ports or ranges within 1-65535 (80,443,8000-8999)", f[1])
		}
	}
	return e, nil
}

// validateCheck checks a listener's active health check; interval 0 turns
// it off, and then nothing else is looked at.
func validateCheck(v *validator, p string, c Check) {
	if c.Interval == 0 {
		return
	}
	v.durRange(p+"interval", c.Interval, minTimeout, maxTimeout)
	if c.Timeout != 0 {
		v.durRange(p+"timeout", c.Timeout, minTimeout, maxTimeout)
		if c.Timeout >= c.Interval {
			v.add(p+"timeout", c.Timeout, "must be shorter than %sinterval (%s)", p, formatDuration(c.Interval))
		}
	}
	v.intRange(p+"rise", c.Rise, 1, 1000)
	v.intRange(p+"fall", c.Fall, 1, 1000)
}
