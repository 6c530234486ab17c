package configs

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// The commented routes example in relayd.yaml is a valid config and uses
// every key of a route.
func TestReferenceRouteExample(t *testing.T) {
	ref, err := os.ReadFile("relayd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ex []string
	in := false
	for _, line := range strings.Split(string(ref), "\n") {
		switch {
		case strings.HasPrefix(line, "    #   routes:"):
			in = true
		case in && strings.HasPrefix(line, "    #   "):
			ex = append(ex, "    "+strings.TrimPrefix(line, "    #   "))
		case in:
			in = false
		}
	}
	if len(ex) == 0 {
		t.Fatal("no routes example in relayd.yaml")
	}
	doc := "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    upstreams: [127.0.0.1:9000]\n    routes:\n" + strings.Join(ex, "\n") + "\n"
	cfg, err := LoadBytes("example.yaml", []byte(doc), LoadOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	rs := cfg.Listeners[0].Routes
	if len(rs) != 3 || rs[0].Name != "a" || rs[2].Protocol != "http" {
		t.Fatalf("%+v", rs)
	}
	rt := reflect.TypeOf(Route{})
	for i := range rt.NumField() {
		key := rt.Field(i).Tag.Get("mapstructure")
		if !strings.Contains(strings.Join(ex, "\n"), key) {
			t.Errorf("the example never mentions %s", key)
		}
	}
}

// config check names the key of what is wrong in a route.
func TestRouteErrors(t *testing.T) {
	base := "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    upstreams: [127.0.0.1:9000]\n"
	for _, c := range []struct{ routes, want string }{
		{"    routes:\n      - name: a\n        sni: [a.example]\n", "listeners[0].routes[0].upstreams: []: at least one upstream is required"},
		{"    routes:\n      - name: a\n        sni: [a.example]\n        upstreams: [localhost:1]\n", "listeners[0].routes[0].upstreams[0]"},
		{"    routes:\n      - name: a\n        sni: ['*']\n        upstreams: [127.0.0.1:1]\n", `listeners[0].routes: routes[0] (a): sni: "*"`},
		{"    routes:\n      - name: a\n        upstreams: [127.0.0.1:1]\n      - name: b\n        sni: [b]\n        upstreams: [127.0.0.1:2]\n",
			"routes[1] (b) is never reached: routes[0] (a)"},
		{"    routes:\n      - name: a\n        sni: [x]\n        host: [x]\n        upstreams: [127.0.0.1:1]\n", "never matches"},
		{"    routes:\n      - name: a\n        sni: [x]\n        upstreams: [127.0.0.1:1]\n        balance: random\n", "listeners[0].routes[0].balance"},
		{"    routes:\n      - name: a\n        sni: [x]\n        upstreams: [127.0.0.1:1]\n        retries: 100000\n", "listeners[0].routes[0].retries"},
		{"    routes:\n      - name: a\n        sni: [x]\n        upstreams: [127.0.0.1:1]\n        colour: red\n", "colour"},
	} {
		_, err := LoadBytes("r.yaml", []byte(base+c.routes), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.routes, err, c.want)
		}
	}
	_, err := LoadBytes("r.yaml", []byte("listeners:\n  - name: s\n    listen: 127.0.0.1:0\n    mode: socks5\n    routes:\n      - name: a\n        sni: [x]\n        upstreams: [127.0.0.1:1]\n"), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "listeners[0].routes: routes need mode forward") {
		t.Errorf("routes in socks5 mode: %v", err)
	}
}
