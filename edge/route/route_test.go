package route

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tab, err := Compile([]Rule{
		{Name: "a", SNI: []string{"a.example", "*.A.example"}},
		{Name: "h2", ALPN: []string{"h2"}},
		{Name: "web", Host: []string{"www.example"}},
		{Name: "anytls", Protocol: "tls"},
		{Name: "other", Protocol: "other"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in   Input
		want string
	}{
		{Input{Protocol: TLS, SNI: "a.example"}, "a"},
		{Input{Protocol: TLS, SNI: "x.y.a.example", ALPN: []string{"h2"}}, "a"},
		{Input{Protocol: TLS, SNI: "xa.example"}, "anytls"},
		{Input{Protocol: TLS, SNI: "b.example", ALPN: []string{"http/1.1", "h2"}}, "h2"},
		{Input{Protocol: TLS}, "anytls"},
		{Input{Protocol: HTTP, Host: "www.example"}, "web"},
		{Input{Protocol: HTTP, Host: "a.example"}, Default},
		{Input{Protocol: HTTP}, Default},
		{Input{Protocol: Other}, "other"},
	} {
		got := Default
		if i := tab.Match(&c.in); i >= 0 {
			got = tab.Name(i)
		}
		if got != c.want {
			t.Errorf("%+v: %s, want %s", c.in, got, c.want)
		}
	}
}

// Compile's errors name the rule and the key.
func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		rules []Rule
		want  string
	}{
		{[]Rule{{Name: ""}}, `routes[0]: name ""`},
		{[]Rule{{Name: "default"}}, `routes[0]: name "default"`},
		{[]Rule{{Name: "a b"}}, `name "a b"`},
		{[]Rule{{Name: "a", SNI: []string{"x"}}, {Name: "a", SNI: []string{"y"}}}, "routes[1] (a): the name of routes[0] too"},
		{[]Rule{{Name: "a", SNI: []string{"*"}}}, `routes[0] (a): sni: "*"`},
		{[]Rule{{Name: "a", SNI: []string{"a..example"}}}, `sni: "a..example"`},
		{[]Rule{{Name: "a", Host: []string{"a.example:80"}}}, `host: "a.example:80"`},
		{[]Rule{{Name: "a", ALPN: []string{""}}}, `alpn ""`},
		{[]Rule{{Name: "a", Protocol: "udp"}}, `protocol "udp"`},
		{[]Rule{{Name: "a", SNI: []string{"x"}, Host: []string{"x"}}}, "routes[0] (a): never matches"},
		{[]Rule{{Name: "a", ALPN: []string{"h2"}, Protocol: "http"}}, "never matches"},
		{[]Rule{{Name: "a", Host: []string{"x"}, Protocol: "tls"}}, "never matches"},
		{[]Rule{{Name: "all"}, {Name: "b", SNI: []string{"b"}}}, "routes[1] (b) is never reached: routes[0] (all)"},
		{[]Rule{{Name: "t", Protocol: "tls"}, {Name: "b", ALPN: []string{"h2"}}}, "routes[1] (b) is never reached"},
		{[]Rule{{Name: "w", SNI: []string{"*.example"}}, {Name: "b", SNI: []string{"b.example", "*.c.example"}}}, "routes[1] (b) is never reached"},
		{[]Rule{{Name: "h", ALPN: []string{"h2", "x"}}, {Name: "b", SNI: []string{"b"}, ALPN: []string{"h2"}}}, "routes[1] (b) is never reached"},
	} {
		_, err := Compile(c.rules)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.rules, err, c.want)
		}
	}
	// Reachable after a narrower rule.
	if _, err := Compile([]Rule{{Name: "b", SNI: []string{"b.example"}}, {Name: "w", SNI: []string{"*.example", "example"}},
		{Name: "h", ALPN: []string{"h2"}}, {Name: "hx", ALPN: []string{"h2", "x"}}, {Name: "rest"}}); err != nil {
		t.Fatal(err)
	}
}
