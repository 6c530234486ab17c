package configs

import (
	"strconv"

	"github.com/relayd/relayd/edge/route"
)

// Route is one of a listener's routes (listeners[].routes): which
// sessions it takes, matched on what the client sends first, and the
// upstream group they go to. A route matches when every field it gives
// matches; the first that matches wins; none matching means the
// listener's own upstreams (the default group).
type Route struct {
	// Name labels the route in logs, metrics and the control API, where
	// its group is "LISTENER/NAME". Required, unique in the listener.
	Name string `mapstructure:"name"`
	// SNI: TLS server names, "a.example" or "*.a.example" (any name below
	// it), case-insensitive, as sent (an IDN as its A-label).
	SNI []string `mapstructure:"sni"`
	// ALPN: TLS application protocols; any one offered matches.
	ALPN []string `mapstructure:"alpn"`
	// Host: the Host of a plaintext HTTP/1.x request, patterns as SNI.
	Host []string `mapstructure:"host"`
	// Protocol: "tls", "http", or "other" (neither: anything else).
	Protocol string `mapstructure:"protocol"`
	// Upstreams, Balance, Retries, Weights and Check are the group's, as a
	// listener's (Retries default len(Upstreams)-1, at most 3; Check
	// default: the listener's).
	Upstreams []string `mapstructure:"upstreams"`
	Balance   string   `mapstructure:"balance"`
	Retries   int      `mapstructure:"retries"`
	Weights   []int    `mapstructure:"weights"`
	Check     Check    `mapstructure:"check"`
}

// Rule is the route's match, for edge/route.
func (r *Route) Rule() route.Rule {
	return route.Rule{Name: r.Name, SNI: r.SNI, ALPN: r.ALPN, Host: r.Host, Protocol: r.Protocol}
}

func routeKey(i, j int, key string) string {
	return listenerKey(i, "routes["+strconv.Itoa(j)+"]."+key)
}

// routeDefaults fills a route's balance, retries (when absent) and check
// (from the listener's, when its interval is unset).
func (c *Config) routeDefaults(present map[string]bool) {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		for j := range l.Routes {
			r := &l.Routes[j]
			if r.Balance == "" {
				r.Balance = BalanceRoundRobin
			}
			if !present[routeKey(i, j, "retries")] {
				r.Retries = DefaultRetries(len(r.Upstreams))
			}
			if r.Check.Interval == 0 {
				r.Check = l.Check
			}
		}
	}
}

// validateRoutes checks listener l's routes (p is "listeners[i].").
func validateRoutes(v *validator, p string, l *Listener) {
	if len(l.Routes) == 0 {
		return
	}
	if l.Mode != ModeForward {
		v.add(p+"routes", nil, "routes need mode forward (a %s client names its own target)", l.Mode)
		return
	}
	rules := make([]route.Rule, len(l.Routes))
	for j := range l.Routes {
		r := &l.Routes[j]
		rp := p + "routes[" + strconv.Itoa(j) + "]."
		rules[j] = r.Rule()
		if len(r.Upstreams) == 0 {
			v.add(rp+"upstreams", r.Upstreams, "at least one upstream is required")
		}
		validateGroup(v, rp, r.Upstreams, r.Balance, r.Weights, r.Check, r.Retries)
	}
	if _, err := route.Compile(rules); err != nil {
		v.add(p+"routes", nil, "%v", err)
	}
}
