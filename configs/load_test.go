package configs

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// minimal is the smallest valid file: one listener, everything else default.
const minimal = "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001]\n"

// socksListener is a minimal socks5 listener.
const socksListener = "listeners:\n  - listen: 127.0.0.1:1080\n    mode: socks5\n"

// fieldErrors flattens a Load/Validate error into its *FieldErrors; it fails
// the test if any part is something else.
func fieldErrors(t testing.TB, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v (%T) is not a *FieldError", err, err)
		}
		out = append(out, fe)
	}
	walk(err)
	return out
}

func keysOf(errs []*FieldError) []string {
	keys := make([]string, len(errs))
	for i, e := range errs {
		keys[i] = e.Key
	}
	return keys
}

// limits.max_sessions 0 derives the cap from the open-file limit after the
// reserve; an explicit cap stays; -1 is no cap.
func TestSessionCap(t *testing.T) {
	c := Default()
	c.Listeners = []Listener{NewListener("a", "127.0.0.1:7000", "127.0.0.1:7001")}
	c.Relay.Loops = 2
	// 64 + 3×2 loops + 4×2 workers + 2 sockets, plus 2 fds per splice pipe:
	// 16 pipes per loop at 20000 files, a sixteenth of the limit at 128.
	for _, tc := range []struct {
		splice string
		nofile uint64
		want   int
	}{{SpliceAuto, 20000, 80 + 2*16*2}, {SpliceAuto, 128, 80 + 2*4*2}, {SpliceOff, 20000, 80}} {
		c.Relay.Splice = tc.splice
		if got := c.FDReserve(tc.nofile); got != tc.want {
			t.Fatalf("splice %s, nofile %d: reserve %d, want %d", tc.splice, tc.nofile, got, tc.want)
		}
	}
	c.Relay.Splice = SpliceOff
	for _, tc := range []struct {
		max                 int
		nofile              uint64
		wantLimit, wantCapa int
	}{
		{0, 20000, (20000 - 80) / 2, (20000 - 80) / 2},
		{0, 64, 1, 1}, // nothing left after the reserve: one session, not none
		{100000, 20000, 100000, (20000 - 80) / 2},
		{-1, 20000, 0, (20000 - 80) / 2},
	} {
		c.Limits.MaxSessions = tc.max
		if l, capa := c.SessionCap(tc.nofile); l != tc.wantLimit || capa != tc.wantCapa {
			t.Errorf("max_sessions %d, nofile %d: cap %d capacity %d, want %d %d", tc.max, tc.nofile, l, capa, tc.wantLimit, tc.wantCapa)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string // a file; "" loads with no file
		env     []string
		listen  string
		ups     []string
		wantKey string
		wantMsg string // exact Error() of the one FieldError, if set
	}{
		{name: "unknown top-level key", yaml: minimal + "bogus: 1\n", wantKey: "bogus",
			wantMsg: "bogus: unknown key"},
		{name: "unknown key in a section", yaml: minimal + "relay:\n  bufer_size: 65536\n", wantKey: "relay.bufer_size",
			wantMsg: "relay.bufer_size: unknown key"},
		{name: "unknown key inside a listener", yaml: minimal + "    colour: blue\n", wantKey: "listeners[0].colour"},
		{name: "unknown key inside the second listener",
			yaml:    minimal + "  - listen: 127.0.0.1:7002\n    upstreams: [127.0.0.1:7001]\n    upstrams: []\n",
			wantKey: "listeners[1].upstrams"},
		{name: "source not an address", yaml: minimal + "    source: 127.0.0.x\n", wantKey: "listeners[0].source"},
		{name: "source range descending", yaml: minimal + "    source: 127.0.0.9-127.0.0.2\n", wantKey: "listeners[0].source"},
		{name: "processes 0", yaml: minimal + "processes: 0\n", wantKey: "processes",
			wantMsg: "processes: 0: must be between 1 and 256"},
		{name: "processes too many", yaml: minimal + "processes: 257\n", wantKey: "processes"},
		{name: "processes a word", yaml: minimal + "processes: many\n", wantKey: "processes"},
		{name: "processes from the environment", yaml: minimal, env: []string{"RELAYD_PROCESSES=-3"}, wantKey: "processes"},
		{name: "negative buffer size", yaml: minimal + "relay:\n  buffer_size: -1\n", wantKey: "relay.buffer_size",
			wantMsg: "relay.buffer_size: -1: must be between 1024 and 16777216"},
		{name: "buffer size below minimum", yaml: minimal + "relay:\n  buffer_size: 512\n", wantKey: "relay.buffer_size"},
		{name: "buffer size above maximum", yaml: minimal + "relay:\n  buffer_size: 32MiB\n", wantKey: "relay.buffer_size",
			wantMsg: "relay.buffer_size: 33554432: must be between 1024 and 16777216"},
		{name: "buffer size bad unit", yaml: minimal + "relay:\n  buffer_size: 32XB\n", wantKey: "relay.buffer_size"},
		{name: "buffer size fraction", yaml: minimal + "relay:\n  buffer_size: 32768.5\n", wantKey: "relay.buffer_size",
			wantMsg: "relay.buffer_size: 32768.5: must be a whole number"},
		{name: "listen is a name", yaml: "listeners:\n  - listen: localhost:7000\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[0].listen"},
		{name: "listen without port", yaml: "listeners:\n  - listen: 127.0.0.1\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[0].listen"},
		{name: "listen port out of range", yaml: "listeners:\n  - listen: 127.0.0.1:70000\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[0].listen"},
		{name: "listen missing", yaml: "listeners:\n  - upstreams: [127.0.0.1:7001]\n", wantKey: "listeners[0].listen"},
		{name: "upstream is a name", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [example.com:80]\n",
			wantKey: "listeners[0].upstreams[0]",
			wantMsg: `listeners[0].upstreams[0]: "example.com:80": host "example.com" must be an IP address (names are not resolved yet)`},
		{name: "upstream port 0", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001, 127.0.0.1:0]\n",
			wantKey: "listeners[0].upstreams[1]"},
		{name: "upstream unspecified", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [\"[::]:80\"]\n",
			wantKey: "listeners[0].upstreams[0]"},
		{name: "zero upstreams", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: []\n",
			wantKey: "listeners[0].upstreams", wantMsg: "listeners[0].upstreams: []: at least one upstream is required"},
		{name: "upstreams missing", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n", wantKey: "listeners[0].upstreams"},
		{name: "upstreams not a list", yaml: "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: 127.0.0.1:7001\n",
			wantKey: "listeners[0].upstreams"},
		{name: "bad balance", yaml: minimal + "    balance: random\n", wantKey: "listeners[0].balance",
			wantMsg: `listeners[0].balance: "random": must be one of: round-robin, least-conn`},
		{name: "upstreams in mode socks5", yaml: minimal + "    mode: socks5\n", wantKey: "listeners[0].upstreams"},
		{name: "zero handshake_timeout is default, negative is not", yaml: minimal + "    handshake_timeout: -1s\n", wantKey: "listeners[0].handshake_timeout"},
		{name: "auth in forward mode", yaml: minimal + "    auth: {users: [\"a:b\"]}\n", wantKey: "listeners[0].auth"},
		{name: "auth user without password", yaml: socksListener + "    auth: {users: [\"alice\"]}\n", wantKey: "listeners[0].auth.users[0]"},
		{name: "auth file missing", yaml: socksListener + "    auth: {file: /nonexistent/relayd-users}\n", wantKey: "listeners[0].auth.file"},
		{name: "proxy accept bad", yaml: minimal + "    proxy_protocol: {accept: v3, trusted_sources: [127.0.0.1]}\n", wantKey: "listeners[0].proxy_protocol.accept"},
		{name: "proxy send any", yaml: minimal + "    proxy_protocol: {send: any}\n", wantKey: "listeners[0].proxy_protocol.send"},
		{name: "proxy accept without trusted", yaml: minimal + "    proxy_protocol: {accept: v2}\n", wantKey: "listeners[0].proxy_protocol.trusted_sources"},
		{name: "trusted not a cidr", yaml: minimal + "    proxy_protocol: {accept: v2, trusted_sources: [haproxy.local]}\n", wantKey: "listeners[0].proxy_protocol.trusted_sources[0]"},
		{name: "acl deny bad", yaml: minimal + "    acl: {deny: [10.0.0.0/33]}\n", wantKey: "listeners[0].acl.deny[0]"},
		{name: "negative per-source sessions", yaml: minimal + "    limits: {per_source_sessions: -1}\n", wantKey: "listeners[0].limits.per_source_sessions"},
		{name: "policy in forward mode", yaml: minimal + "    policy: {allow: [0.0.0.0/0]}\n", wantKey: "listeners[0].policy"},
		{name: "policy bad ports", yaml: socksListener + "    policy: {allow: [\"127.0.0.1/32 0-80\"]}\n", wantKey: "listeners[0].policy.allow[0]"},
		{name: "policy three fields", yaml: socksListener + "    policy: {deny: [\"1.2.3.4 80 x\"]}\n", wantKey: "listeners[0].policy.deny[0]"},
		{name: "resolver workers zero", yaml: minimal + "resolver: {workers: 0}\n", wantKey: "resolver.workers"},
		{name: "unknown mode", yaml: minimal + "    mode: tunnel\n", wantKey: "listeners[0].mode"},
		{name: "negative retries", yaml: minimal + "    retries: -1\n", wantKey: "listeners[0].retries"},
		{name: "negative listener max_sessions", yaml: minimal + "    max_sessions: -5\n", wantKey: "listeners[0].max_sessions"},
		{name: "bad listener name", yaml: minimal + "    name: \"a b\"\n", wantKey: "listeners[0].name"},
		{name: "duplicate listener name",
			yaml:    minimal + "    name: x\n  - name: x\n    listen: 127.0.0.1:7002\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[1].name"},
		{name: "duplicate listen address",
			yaml:    minimal + "  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[1].listen"},
		{name: "wildcard overlaps a listener",
			yaml:    minimal + "  - listen: :7000\n    upstreams: [127.0.0.1:7001]\n",
			wantKey: "listeners[1].listen"},
		{name: "bad duration string", yaml: minimal + "relay:\n  idle_timeout: 5 minutes\n", wantKey: "relay.idle_timeout",
			wantMsg: `relay.idle_timeout: "5 minutes": not a duration (write a number and a unit, e.g. "5s", "250ms", "1m30s")`},
		{name: "duration without unit", yaml: minimal + "connector:\n  connect_timeout: 300\n", wantKey: "connector.connect_timeout",
			wantMsg: `connector.connect_timeout: 300: a duration needs a unit, e.g. "300s"`},
		{name: "zero idle timeout", yaml: minimal + "relay:\n  idle_timeout: 0s\n", wantKey: "relay.idle_timeout",
			wantMsg: "relay.idle_timeout: 0s: must be between 1ms and 168h"},
		{name: "negative fin timeout", yaml: minimal + "relay:\n  fin_timeout: -1s\n", wantKey: "relay.fin_timeout"},
		{name: "negative loops", yaml: minimal + "relay:\n  loops: -1\n", wantKey: "relay.loops"},
		{name: "loops is a string", yaml: minimal + "relay:\n  loops: four\n", wantKey: "relay.loops",
			wantMsg: `relay.loops: "four": must be an integer, not a string`},
		{name: "no_delay is a number", yaml: minimal + "relay:\n  no_delay: 1\n", wantKey: "relay.no_delay"},
		{name: "zero workers", yaml: minimal + "connector:\n  workers: 0\n", wantKey: "connector.workers"},
		{name: "zero queue", yaml: minimal + "connector:\n  queue: 0\n", wantKey: "connector.queue"},
		{name: "bad accept mode", yaml: minimal + "accept:\n  mode: many\n", wantKey: "accept.mode"},
		{name: "bad pacing", yaml: minimal + "connector:\n  pacing: fast\n", wantKey: "connector.pacing",
			wantMsg: `connector.pacing: "fast": must be one of: adaptive, fixed`},
		{name: "zero upstream cap", yaml: minimal + "connector:\n  upstream_max_inflight: 0\n", wantKey: "connector.upstream_max_inflight"},
		{name: "zero upstream queue", yaml: minimal + "connector:\n  upstream_queue: 0\n", wantKey: "connector.upstream_queue"},
		{name: "negative fail_after", yaml: minimal + "connector:\n  health: {fail_after: -1}\n", wantKey: "connector.health.fail_after"},
		{name: "zero backoff", yaml: minimal + "connector:\n  health: {backoff: 0s}\n", wantKey: "connector.health.backoff"},
		{name: "backoff_max below backoff", yaml: minimal + "connector:\n  health: {backoff: 10s, backoff_max: 5s}\n", wantKey: "connector.health.backoff_max",
			wantMsg: "connector.health.backoff_max: 5s: must not be shorter than connector.health.backoff (10s)"},
		{name: "weights count", yaml: minimal + "    weights: [1, 2]\n", wantKey: "listeners[0].weights"},
		{name: "weight zero", yaml: minimal + "    weights: [0]\n", wantKey: "listeners[0].weights[0]"},
		{name: "weight too large", yaml: minimal + "    weights: [257]\n", wantKey: "listeners[0].weights[0]"},
		{name: "check timeout not below interval", yaml: minimal + "    check: {interval: 1s, timeout: 1s}\n", wantKey: "listeners[0].check.timeout",
			wantMsg: "listeners[0].check.timeout: 1s: must be shorter than listeners[0].check.interval (1s)"},
		{name: "check rise zero", yaml: minimal + "    check: {interval: 2s, rise: 0}\n", wantKey: "listeners[0].check.rise",
			wantMsg: "listeners[0].check.rise: 0: must be between 1 and 1000"},
		{name: "check fall zero", yaml: minimal + "    check: {interval: 2s, fall: 0}\n", wantKey: "listeners[0].check.fall"},
		{name: "check negative interval", yaml: minimal + "    check: {interval: -1s}\n", wantKey: "listeners[0].check.interval"},
		{name: "global max_sessions below -1", yaml: minimal + "limits:\n  max_sessions: -2\n", wantKey: "limits.max_sessions"},
		{name: "negative shutdown timeout", yaml: minimal + "shutdown:\n  timeout: -1s\n", wantKey: "shutdown.timeout"},
		{name: "bad log level", yaml: minimal + "log:\n  level: loud\n", wantKey: "log.level"},
		{name: "tiny ring", yaml: minimal + "log:\n  ring_size: 1\n", wantKey: "log.ring_size"},
		{name: "remote admin without allow_remote", yaml: minimal + "admin:\n  listen: 0.0.0.0:9090\n", wantKey: "admin.listen"},
		{name: "admin on a listener's address", yaml: minimal + "admin:\n  listen: 127.0.0.1:7000\n", wantKey: "admin.listen"},
		{name: "key without a value", yaml: minimal + "admin:\n  listen:\n", wantKey: "admin.listen",
			wantMsg: `admin.listen: no value; write "" for an empty string, or leave the key out for the default`},
		{name: "listener key without a value", yaml: minimal + "    balance: ~\n", wantKey: "listeners[0].balance"},
		{name: "integer too large", yaml: minimal + "relay:\n  loops: 99999999999999999999\n", wantKey: "relay.loops",
			wantMsg: "relay.loops: 1e+20: too large"},
		{name: "section is a scalar", yaml: minimal + "relay: 5\n", wantKey: "relay",
			wantMsg: "relay: 5: must be a mapping, not a number"},
		{name: "listeners is a mapping", yaml: "listeners:\n  listen: 127.0.0.1:7000\n", wantKey: "listeners"},
		{name: "no listeners, no file", wantKey: "listeners",
			wantMsg: "listeners: at least one listener is required (use --listen/--upstream or a config file)"},
		{name: "no listeners in file", yaml: "relay:\n  loops: 2\n", wantKey: "listeners"},
		{name: "upstream flag without listen", ups: []string{"127.0.0.1:7001"}, wantKey: "listeners"},
		{name: "listen flag without upstream", listen: "127.0.0.1:7000", wantKey: "listeners[0].upstreams"},
		{name: "listen flag bad address", listen: "127.0.0.1:x", ups: []string{"127.0.0.1:7001"}, wantKey: "listeners[0].listen"},
		{name: "env not an integer", yaml: minimal, env: []string{"RELAYD_RELAY_LOOPS=four"}, wantKey: "relay.loops",
			wantMsg: `relay.loops: "four": from RELAYD_RELAY_LOOPS: not an integer`},
		{name: "env bad size", yaml: minimal, env: []string{"RELAYD_RELAY_BUFFER_SIZE=-1"}, wantKey: "relay.buffer_size"},
		{name: "env bad duration", yaml: minimal, env: []string{"RELAYD_RELAY_FIN_TIMEOUT=soon"}, wantKey: "relay.fin_timeout"},
		{name: "env unknown key", yaml: minimal, env: []string{"RELAYD_RELAY_LOPS=4"}, wantKey: "RELAYD_RELAY_LOPS"},
		{name: "env listeners", yaml: minimal, env: []string{"RELAYD_LISTENERS_0_LISTEN=:1"}, wantKey: "RELAYD_LISTENERS_0_LISTEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Env: true, Environ: tt.env, Listen: tt.listen, Upstreams: tt.ups}
			if opts.Environ == nil {
				opts.Environ = []string{} // never the real environment
			}
			var cfg *Config
			var err error
			if tt.yaml == "" {
				cfg, err = Load(opts)
			} else {
				cfg, err = LoadBytes("test.yaml", []byte(tt.yaml), opts)
			}
			if err == nil {
				t.Fatalf("Load accepted it: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("Load returned a config with an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("errors.As(*FieldError) = false for %v", err)
			}
			errs := fieldErrors(t, err)
			if got := keysOf(errs); !slices.Equal(got, []string{tt.wantKey}) {
				t.Fatalf("keys = %q, want exactly [%q]; error:\n%v", got, tt.wantKey, err)
			}
			if tt.wantMsg != "" && errs[0].Error() != tt.wantMsg {
				t.Errorf("message\n got %s\nwant %s", errs[0].Error(), tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.wantKey+": ") {
				t.Errorf("message %q does not start with the key", err.Error())
			}
		})
	}
}

// TestLoadReportsEveryProblem: one load lists all problems, in file order by
// phase, and a value that failed to decode is not reported twice.
func TestLoadReportsEveryProblem(t *testing.T) {
	yml := "listeners:\n  - listen: localhost:1\n    upstreams: []\n    extra: 1\n" +
		"relay:\n  loops: x\n  buffer_size: -1\n  idle_timeout: 300\n"
	_, err := LoadBytes("t.yaml", []byte(yml), LoadOptions{})
	got := keysOf(fieldErrors(t, err))
	want := []string{
		"listeners[0].extra",  // unknown keys first
		"relay.loops",         // then values that do not decode
		"relay.idle_timeout",  //
		"listeners[0].listen", // then validation, in struct order
		"listeners[0].upstreams",
		"relay.buffer_size",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys\n got %q\nwant %q\nerror:\n%v", got, want, err)
	}
}

func TestSyntaxError(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantLine int
	}{
		{"bad indentation", "relay:\n  loops: 4\n   x: 1\n", 3},
		// yaml.v3 names a parser error's context line counted from 0: the
		// list opens on line 3. The file name and the parser's line are
		// passed through as they are.
		{"unclosed flow list", "listeners:\n  - listen: 127.0.0.1:7000\n    upstreams: [127.0.0.1:7001\n", 2},
		{"duplicate key", "relay:\n  loops: 1\n  loops: 2\n", 3},
		{"top level is a list", "- listen: 127.0.0.1:7000\n", 1},
		{"tab indentation", "relay:\n\tloops: 4\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(LoadOptions{File: path})
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("errors.As(*SyntaxError) = false for %v (%T)", err, err)
			}
			if se.File != path || se.Line != tt.wantLine {
				t.Errorf("at %s:%d, want %s:%d (%v)", se.File, se.Line, path, tt.wantLine, err)
			}
			if !strings.HasPrefix(err.Error(), path+":"+strconv.Itoa(tt.wantLine)+": ") || se.Msg == "" {
				t.Errorf("message %q does not start with file:line", err.Error())
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false")
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(LoadOptions{File: filepath.Join(t.TempDir(), "nope.yaml")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("a missing file is not an invalid config")
	}
}

// reference is what relayd.yaml must load to: Default plus its listener.
func reference() Config {
	want := Default()
	want.Listeners = []Listener{{
		Name: "l0", Listen: "127.0.0.1:7000", Upstreams: []string{"127.0.0.1:7001"},
		Balance: BalanceRoundRobin, Retries: 0, Mode: ModeForward, MaxSessions: 0,
	}}
	fillEdgeDefaults(&want.Listeners[0])
	return want
}

// fillEdgeDefaults sets the listener's edge keys to what Load fills in.
func fillEdgeDefaults(l *Listener) {
	l.HandshakeTimeout = DefaultHandshakeTimeout
	l.ProxyProtocol.Accept, l.ProxyProtocol.Send = ProxyNone, ProxyNone
	l.Check.Rise, l.Check.Fall = DefaultRise, DefaultFall
}

func TestReferenceFileIsDefaults(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		cfg, err := LoadBytes("relayd.yaml", ReferenceYAML, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(); !reflect.DeepEqual(*cfg, want) {
			t.Fatalf("relayd.yaml differs from Default():\n got %+v\nwant %+v", *cfg, want)
		}
	})
	t.Run("file on disk", func(t *testing.T) {
		cfg, err := Load(LoadOptions{File: "relayd.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(); !reflect.DeepEqual(*cfg, want) {
			t.Fatalf("got %+v\nwant %+v", *cfg, want)
		}
	})
	// Each listener field must equal what Load fills in when it is absent,
	// so the example listener documents the per-listener defaults too.
	t.Run("listener keys are the listener defaults", func(t *testing.T) {
		cfg, err := LoadBytes("min.yaml", []byte(minimal), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := reference(); !reflect.DeepEqual(*cfg, want) {
			t.Fatalf("got %+v\nwant %+v", *cfg, want)
		}
	})
}

// TestReferenceFileDocumentsEveryKey: every key of Config is in relayd.yaml
// (the listener's inside the example listener), no key is in it twice or
// unknown, and every key has a comment.
func TestReferenceFileDocumentsEveryKey(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal(ReferenceYAML, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				key := joinKey(prefix, k.Value)
				// A list element's first key carries the element's comment.
				if k.HeadComment == "" && k.LineComment == "" && !(i == 0 && n.HeadComment != "") {
					t.Errorf("%s has no comment", key)
				}
				if v.Kind == yaml.ScalarNode || (v.Kind == yaml.SequenceNode && v.Style == yaml.FlowStyle) {
					got = append(got, key)
				}
				walk(v, key)
			}
		case yaml.SequenceNode:
			for _, e := range n.Content {
				if e.Kind == yaml.MappingNode {
					walk(e, prefix+"[]")
				}
			}
		case yaml.DocumentNode:
			walk(n.Content[0], prefix)
		}
	}
	walk(&doc, "")

	var want []string
	var schema func(t reflect.Type, prefix string)
	schema = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := joinKey(prefix, fieldKey(f))
			switch {
			case isSection(f.Type):
				schema(f.Type, key)
			case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()) && prefix == "":
				schema(f.Type.Elem(), key+"[]")
			case f.Type.Kind() == reflect.Slice && isSection(f.Type.Elem()):
				// A nested list empty by default (listeners[].routes):
				// its key is in the file, its entries' keys in an example
				// in the comments (TestReferenceRouteExample reads it).
				want = append(want, key)
			default:
				want = append(want, key)
			}
		}
	}
	schema(configType, "")
	if !slices.Equal(got, want) {
		t.Errorf("relayd.yaml keys (in order)\n got %q\nwant %q", got, want)
	}
}

func TestEnvOverrides(t *testing.T) {
	environ := []string{
		"RELAYD_RELAY_LOOPS=4",
		"RELAYD_CONNECTOR_CONNECT_TIMEOUT=2s",
		"RELAYD_RELAY_BUFFER_SIZE=64k",
		"RELAYD_RELAY_NO_DELAY=false",
		"RELAYD_LOG_LEVEL=debug",
		"RELAYD_ADMIN_LISTEN=",
		"RELAYD_CONFIG=/etc/relayd.yaml", // not a section: left for the CLI
		"RELAYD_TEST_CHILD=1",
		"PATH=/usr/bin",
		"NOEQUALS",
	}
	yml := minimal + "relay:\n  loops: 2\n  idle_timeout: 1m\n"

	cfg, err := LoadBytes("t.yaml", []byte(yml), LoadOptions{Env: true, Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	want := reference()
	want.Relay.Loops = 4 // the environment beats the file
	want.Relay.IdleTimeout = time.Minute
	want.Connector.ConnectTimeout = 2 * time.Second
	want.Relay.BufferSize = 64 << 10
	want.Relay.NoDelay = false
	want.Log.Level = "debug"
	want.Admin.Listen = ""
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", *cfg, want)
	}

	t.Run("Env false ignores the environment", func(t *testing.T) {
		cfg, err := LoadBytes("t.yaml", []byte(yml), LoadOptions{Environ: environ})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Relay.Loops != 2 {
			t.Fatalf("loops = %d, want the file's 2", cfg.Relay.Loops)
		}
	})
	t.Run("nil Environ reads the process environment", func(t *testing.T) {
		t.Setenv("RELAYD_RELAY_LOOPS", "3")
		cfg, err := LoadBytes("t.yaml", []byte(minimal), LoadOptions{Env: true})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Relay.Loops != 3 {
			t.Fatalf("loops = %d, want 3", cfg.Relay.Loops)
		}
	})
}

func TestQuickFlags(t *testing.T) {
	fileTwo := minimal + "  - listen: 127.0.0.1:7002\n    upstreams: [127.0.0.1:7001]\n"
	tests := []struct {
		name   string
		file   string
		listen string
		ups    []string
		want   []Listener
	}{
		{
			name:   "no file, comma list and repeats",
			listen: "127.0.0.1:7000",
			ups:    []string{"127.0.0.1:7001, 127.0.0.1:7002", "[::1]:7003"},
			want: []Listener{{Name: "default", Listen: "127.0.0.1:7000",
				Upstreams: []string{"127.0.0.1:7001", "127.0.0.1:7002", "[::1]:7003"},
				Balance:   BalanceRoundRobin, Retries: 2, Mode: ModeForward}},
		},
		{
			name:   "listen replaces the file's listeners",
			file:   fileTwo,
			listen: ":8000",
			ups:    []string{"127.0.0.1:9000"},
			want: []Listener{{Name: "default", Listen: ":8000", Upstreams: []string{"127.0.0.1:9000"},
				Balance: BalanceRoundRobin, Retries: 0, Mode: ModeForward}},
		},
		{
			name: "upstream alone replaces the one listener's upstreams",
			file: minimal + "    balance: least-conn\n",
			ups:  []string{"127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5"},
			want: []Listener{{Name: "l0", Listen: "127.0.0.1:7000",
				Upstreams: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"},
				Balance:   BalanceLeastConn, Retries: 3, Mode: ModeForward}},
		},
		{
			name: "explicit retries survive --upstream",
			file: minimal + "    retries: 1\n",
			ups:  []string{"127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"},
			want: []Listener{{Name: "l0", Listen: "127.0.0.1:7000",
				Upstreams: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
				Balance:   BalanceRoundRobin, Retries: 1, Mode: ModeForward}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{Listen: tt.listen, Upstreams: tt.ups}
			var cfg *Config
			var err error
			if tt.file == "" {
				cfg, err = Load(opts)
			} else {
				cfg, err = LoadBytes("t.yaml", []byte(tt.file), opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				fillEdgeDefaults(&tt.want[i])
			}
			if !reflect.DeepEqual(cfg.Listeners, tt.want) {
				t.Fatalf("listeners\n got %+v\nwant %+v", cfg.Listeners, tt.want)
			}
		})
	}
	t.Run("upstream alone with two listeners is ambiguous", func(t *testing.T) {
		_, err := LoadBytes("t.yaml", []byte(fileTwo), LoadOptions{Upstreams: []string{"127.0.0.1:1"}})
		if got := keysOf(fieldErrors(t, err)); !slices.Equal(got, []string{"listeners"}) {
			t.Fatalf("keys = %q (%v)", got, err)
		}
	})
}

func TestListenerDefaults(t *testing.T) {
	yml := "listeners:\n" +
		"  - {listen: 127.0.0.1:7000, upstreams: [127.0.0.1:1]}\n" +
		"  - {listen: 127.0.0.1:7001, upstreams: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3]}\n" +
		"  - {listen: 127.0.0.1:7002, upstreams: [127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:4, 127.0.0.1:5, 127.0.0.1:6]}\n" +
		"  - {listen: 127.0.0.1:7003, upstreams: [127.0.0.1:1, 127.0.0.1:2], retries: 0, name: edge}\n"
	cfg, err := LoadBytes("t.yaml", []byte(yml), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type nr struct {
		name    string
		retries int
	}
	var got []nr
	for _, l := range cfg.Listeners {
		got = append(got, nr{l.Name, l.Retries})
		if l.Balance != BalanceRoundRobin || l.Mode != ModeForward {
			t.Errorf("%s: balance %q mode %q", l.Name, l.Balance, l.Mode)
		}
	}
	want := []nr{{"l0", 0}, {"l1", 2}, {"l2", 3}, {"edge", 0}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseSizesAndDurations(t *testing.T) {
	sizes := []struct {
		in   string
		want int
	}{
		{"32768", 32768}, {"32768\n", 32768}, {"\"32768\"", 32768}, {"32KiB", 32 << 10}, {"64k", 64 << 10},
		{"64K", 64 << 10}, {"64kb", 64 << 10}, {"\"2 KiB\"", 2 << 10}, {"1MiB", 1 << 20}, {"1m", 1 << 20},
		{"16MiB", 16 << 20}, {"1024b", 1024},
	}
	for _, tt := range sizes {
		t.Run("buffer_size "+tt.in, func(t *testing.T) {
			cfg, err := LoadBytes("t.yaml", []byte(minimal+"relay:\n  buffer_size: "+tt.in+"\n"), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Relay.BufferSize != tt.want {
				t.Fatalf("buffer_size = %d, want %d", cfg.Relay.BufferSize, tt.want)
			}
		})
	}
	durations := []struct {
		in   string
		want time.Duration
	}{
		{"250ms", 250 * time.Millisecond}, {"1m30s", 90 * time.Second}, {"2h", 2 * time.Hour},
		{"\"10s\"", 10 * time.Second}, {"1.5s", 1500 * time.Millisecond},
	}
	for _, tt := range durations {
		t.Run("fin_timeout "+tt.in, func(t *testing.T) {
			cfg, err := LoadBytes("t.yaml", []byte(minimal+"relay:\n  fin_timeout: "+tt.in+"\n"), LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Relay.FinTimeout != tt.want {
				t.Fatalf("fin_timeout = %v, want %v", cfg.Relay.FinTimeout, tt.want)
			}
		})
	}
	t.Run("shutdown timeout 0 needs no unit", func(t *testing.T) {
		cfg, err := LoadBytes("t.yaml", []byte(minimal+"shutdown:\n  timeout: 0\n"), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Shutdown.Timeout != 0 {
			t.Fatalf("timeout = %v", cfg.Shutdown.Timeout)
		}
	})
	bad := []string{"", "k", "1.5k", "12 parsecs", "9999999999999g", "--1"}
	for _, in := range bad {
		t.Run("ParseByteSize rejects "+in, func(t *testing.T) {
			if n, err := ParseByteSize(in); err == nil {
				t.Fatalf("ParseByteSize(%q) = %d, want an error", in, n)
			}
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	yml := minimal + "    name: edge\n  - listen: \"[::1]:7002\"\n    upstreams: [127.0.0.1:7001, \"[::1]:7001\"]\n    balance: least-conn\n" +
		"relay:\n  loops: 3\n  buffer_size: 64k\n  idle_timeout: 90s\nshutdown:\n  timeout: 0\nadmin:\n  listen: \"\"\n"
	cfg, err := LoadBytes("t.yaml", []byte(yml), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"  idle_timeout: 1m30s\n", "  buffer_size: 65536\n", "  timeout: 0s\n",
		"    upstreams: [\"127.0.0.1:7001\", \"[::1]:7001\"]\n", "  listen: \"\"\n"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("YAML() lacks %q:\n%s", line, out)
		}
	}
	back, err := LoadBytes("out.yaml", out, LoadOptions{})
	if err != nil {
		t.Fatalf("YAML() output does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Fatalf("round trip changed the config\n got %+v\nwant %+v", back, cfg)
	}
}

// processes takes a count or "auto", from the file and the environment,
// and writes "auto" back (the master re-sends configs as YAML and JSON).
func TestProcesses(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  []string
		want ProcessCount
	}{
		{minimal, nil, 1},
		{minimal + "processes: 4\n", nil, 4},
		{minimal + "processes: auto\n", nil, ProcessesAuto},
		{minimal + "processes: \"3\"\n", nil, 3},
		{minimal, []string{"RELAYD_PROCESSES=auto"}, ProcessesAuto},
		{minimal, []string{"RELAYD_PROCESSES=6"}, 6},
	} {
		cfg, err := LoadBytes("t.yaml", []byte(tc.yaml), LoadOptions{Env: true, Environ: tc.env})
		if err != nil {
			t.Fatalf("%q %v: %v", tc.yaml, tc.env, err)
		}
		if cfg.Processes != tc.want {
			t.Fatalf("%q %v: processes %d, want %d", tc.yaml, tc.env, cfg.Processes, tc.want)
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatal(err)
		}
		back, err := LoadBytes("out.yaml", out, LoadOptions{})
		if err != nil || back.Processes != tc.want {
			t.Fatalf("YAML round trip: %v, processes %v\n%s", err, back, out)
		}
	}
	if ProcessesAuto.Workers() != runtime.NumCPU() || ProcessCount(3).Workers() != 3 {
		t.Fatal("Workers()")
	}
}

// A multi-process master sends the effective config to its workers as
// JSON: every field survives the trip.
func TestJSONRoundTrip(t *testing.T) {
	f, err := os.ReadFile("relayd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml := string(f) + "" // the reference file, every key set
	cfg, err := LoadBytes("relayd.yaml", []byte(yml), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Processes = ProcessesAuto
	cfg.Listeners[0].Weights = []int{3}
	cfg.Listeners[0].Auth.Users = []string{"u:p:w"}
	cfg.Listeners[0].Check.Interval = 1500 * time.Millisecond
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, cfg) {
		t.Fatalf("JSON round trip changed the config\n got %+v\nwant %+v", back, *cfg)
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	cfg := Default()
	cfg.Listeners = []Listener{NewListener("a", "127.0.0.1:0", "127.0.0.1:1", "127.0.0.1:2")}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	cfg.Relay.BufferSize = -1
	cfg.Listeners[0].Upstreams = nil
	got := keysOf(fieldErrors(t, cfg.Validate()))
	if want := []string{"listeners[0].upstreams", "relay.buffer_size"}; !slices.Equal(got, want) {
		t.Fatalf("keys = %q, want %q", got, want)
	}
	t.Run("SetDefaults fills what Load fills", func(t *testing.T) {
		c := Default()
		c.Listeners = []Listener{{Listen: "127.0.0.1:7000", Upstreams: []string{"127.0.0.1:7001"}}}
		if err := c.Validate(); err == nil {
			t.Fatal("empty name, balance and mode accepted")
		}
		c.SetDefaults()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if want := reference(); !reflect.DeepEqual(c, want) {
			t.Fatalf("got %+v\nwant %+v", c, want)
		}
	})
	t.Run("remote admin allowed with allow_remote", func(t *testing.T) {
		c := reference()
		c.Admin = Admin{Listen: ":9090", AllowRemote: true}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoopCount(t *testing.T) {
	if got, want := (Relay{}).LoopCount(), runtime.GOMAXPROCS(0); got != want {
		t.Errorf("LoopCount() with 0 = %d, want GOMAXPROCS %d", got, want)
	}
	if got := (Relay{Loops: 3}).LoopCount(); got != 3 {
		t.Errorf("LoopCount() = %d, want 3", got)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{Key: "relay.buffer_size", Value: -1, Reason: "r"}, "relay.buffer_size: -1: r"},
		{FieldError{Key: "a", Value: "", Reason: "r"}, `a: "": r`},
		{FieldError{Key: "a", Value: []string{}, Reason: "r"}, "a: []: r"},
		{FieldError{Key: "a", Value: []string{"x", "y"}, Reason: "r"}, `a: ["x", "y"]: r`},
		{FieldError{Key: "a", Value: 5 * time.Minute, Reason: "r"}, "a: 5m: r"},
		{FieldError{Key: "a", Reason: "unknown key"}, "a: unknown key"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// TestLoadConcurrent: each Load has its own viper, so concurrent loads (the
// daemon's SIGHUP reload racing a `config check`) share nothing.
func TestLoadConcurrent(t *testing.T) {
	const n = 8
	errc := make(chan error, n)
	for i := range n {
		go func() {
			cfg, err := LoadBytes("relayd.yaml", ReferenceYAML, LoadOptions{
				Env: true, Environ: []string{"RELAYD_RELAY_LOOPS=" + strconv.Itoa(i+1)},
			})
			if err == nil && cfg.Relay.Loops != i+1 {
				err = errors.New("loops " + strconv.Itoa(cfg.Relay.Loops) + ", want " + strconv.Itoa(i+1))
			}
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func BenchmarkLoadReference(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadBytes("relayd.yaml", ReferenceYAML, LoadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// config check output must not print passwords; everything else round-trips.
func TestYAMLRedactsPasswords(t *testing.T) {
	cfg, err := LoadBytes("t.yaml", []byte(socksListener+"    auth: {users: [\"alice:s3:cret\", \"bob:hunter2\"]}\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3:cret") || strings.Contains(string(out), "hunter2") {
		t.Fatalf("password in YAML():\n%s", out)
	}
	if !strings.Contains(string(out), `users: ["alice:<redacted>", "bob:<redacted>"]`) {
		t.Errorf("users not shown redacted:\n%s", out)
	}
	if cfg.Listeners[0].Auth.Users[0] != "alice:s3:cret" {
		t.Errorf("YAML() changed the config: %q", cfg.Listeners[0].Auth.Users)
	}
}
