package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/relay"
)

const controlPath = "/upstreams/state"

// fakeControl records state changes of one known upstream.
type fakeControl struct {
	mu       sync.Mutex
	changes  []string
	sessions *relay.SessionsPage // GET /sessions answers this
}

func (f *fakeControl) api() *Control {
	return &Control{
		Upstreams: func(context.Context) ([]UpstreamInfo, error) {
			return BuildUpstreams([]connector.UpstreamStats{
				{Listener: "b", Addr: netip.MustParseAddrPort("127.0.0.1:2"), Up: false},
				{Listener: "a", Addr: netip.MustParseAddrPort("127.0.0.1:1"), Up: true, Admin: connector.Draining, Inflight: 2},
			}, map[string]map[netip.AddrPort]int64{"a": {netip.MustParseAddrPort("127.0.0.1:1"): 7}}), nil
		},
		SetUpstream: func(_ context.Context, l string, a netip.AddrPort, st connector.AdminState, who string) (StateChange, error) {
			if l != "a" || a != netip.MustParseAddrPort("127.0.0.1:1") {
				return StateChange{}, connector.ErrUnknownUpstream
			}
			f.mu.Lock()
			f.changes = append(f.changes, st.String()+" by "+who)
			f.mu.Unlock()
			return StateChange{Listener: l, Upstream: a.String(), State: st.String(), Previous: "enabled"}, nil
		},
		Sessions: func(_ context.Context, q relay.SessionQuery) (SessionsPage, error) {
			if f.sessions == nil {
				return SessionsPage{Sessions: []SessionJSON{}}, nil
			}
			return PageOf(*f.sessions, q.Offset, time.Now()), nil
		},
		CloseSessions: func(_ context.Context, q relay.SessionQuery, worker int, who string) (Closed, error) {
			if q.ID != 0 && worker < 0 {
				return Closed{}, ErrWorkerRequired // as a master answers
			}
			f.mu.Lock()
			f.changes = append(f.changes, fmt.Sprintf("close id=%d worker=%d listener=%s upstream=%v client=%v by %s",
				q.ID, worker, q.Listener, q.Upstream, q.ClientPrefix, who))
			f.mu.Unlock()
			return Closed{Closed: 3}, nil
		},
	}
}

func controlServer(t testing.TB, f *fakeControl, token string) *Server {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", Control: f.api(), Token: token}, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func doReq(h http.Handler, method, target, body, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// GET /upstreams: sorted, states as operators read them, sessions joined
// in; ?listener= filters.
func TestUpstreamsJSON(t *testing.T) {
	h := controlServer(t, &fakeControl{}, "").Handler()
	w := doReq(h, "GET", "/upstreams", "", "")
	var list []UpstreamInfo
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	if len(list) != 2 || list[0].Listener != "a" || list[0].State != "draining" || list[0].Health != "up" ||
		list[0].SessionsActive != 7 || list[0].ConnectsInflight != 2 || list[1].State != "down" || len(list[0].Failures) != connector.NumClasses {
		t.Fatalf("%+v", list)
	}
	w = doReq(h, "GET", "/upstreams?listener=b", "", "")
	list = nil
	_ = json.Unmarshal(w.Body.Bytes(), &list)
	if len(list) != 1 || list[0].Listener != "b" {
		t.Fatalf("filtered: %+v", list)
	}
}

// State changes over TCP: 401 without the token or with a wrong one (and
// with no token configured, always), 200 with it; bad requests are 400,
// an unknown upstream 404; other methods and paths stay read-only.
func TestStateChangeAuth(t *testing.T) {
	f := &fakeControl{}
	h := controlServer(t, f, "0123456789abcdef").Handler()
	body := "listener=a&upstream=127.0.0.1:1&state=drain"
	for _, c := range []struct {
		method, path, body, auth string
		code                     int
	}{
		{"POST", controlPath, body, "", 401},
		{"POST", controlPath, body, "Bearer wrong", 401},
		{"POST", controlPath, body, "Basic MDEyMzQ1Njc4OWFiY2RlZg==", 401},
		{"POST", controlPath, body, "Bearer 0123456789abcdef", 200},
		{"POST", controlPath, "listener=a&upstream=nope&state=drain", "Bearer 0123456789abcdef", 400},
		{"POST", controlPath, "listener=a&upstream=127.0.0.1:1&state=explode", "Bearer 0123456789abcdef", 400},
		{"POST", controlPath, "listener=x&upstream=127.0.0.1:1&state=drain", "Bearer 0123456789abcdef", 404},
		{"PUT", controlPath, body, "Bearer 0123456789abcdef", 405},
		{"POST", "/metrics", body, "Bearer 0123456789abcdef", 405},
		{"GET", controlPath, "", "", 405},
	} {
		if w := doReq(h, c.method, c.path, c.body, c.auth); w.Code != c.code {
			t.Fatalf("%s %s %q auth %q: %d, want %d (%s)", c.method, c.path, c.body, c.auth, w.Code, c.code, w.Body)
		}
	}
	if len(f.changes) != 1 || !strings.HasPrefix(f.changes[0], "draining by token from ") {
		t.Fatalf("changes %q", f.changes)
	}
	// No token configured: TCP never changes anything.
	h = controlServer(t, &fakeControl{}, "").Handler()
	if w := doReq(h, "POST", controlPath, body, "Bearer "); w.Code != 401 {
		t.Fatalf("no token configured: %d", w.Code)
	}
}

// POST /sessions/close: like a state change, only with the token; a
// filter is required, malformed ones are 400, an ID without its worker
// (on a master) 400, and the filters reach the control as given.
func TestCloseSessionsAuth(t *testing.T) {
	f := &fakeControl{}
	h := controlServer(t, f, "0123456789abcdef").Handler()
	const tok = "Bearer 0123456789abcdef"
	for _, c := range []struct {
		body, auth string
		code       int
	}{
		{"upstream=127.0.0.1:1", "", 401},
		{"upstream=127.0.0.1:1", "Bearer wrong", 401},
		{"", tok, 400},
		{"offset=3&limit=1", tok, 400},
		{"id=0", tok, 400},
		{"id=-1&worker=0", tok, 400},
		{"id=12&worker=x", tok, 400},
		{"id=12&worker=-2", tok, 400},
		{"upstream=nope", tok, 400},
		{"client=10.0.0.1/99", tok, 400},
		{"id=281474976710657", tok, 400}, // a master needs the worker
		{"id=281474976710657&worker=1", tok, 200},
		{"listener=a&upstream=127.0.0.1:1&client=10.1.2.3/8", tok, 200},
	} {
		w := doReq(h, "POST", "/sessions/close", c.body, c.auth)
		if w.Code != c.code {
			t.Fatalf("%q auth %q: %d, want %d (%s)", c.body, c.auth, w.Code, c.code, w.Body)
		}
		if c.code == 200 && strings.TrimSpace(w.Body.String()) != "{\n  \"closed\": 3\n}" {
			t.Fatalf("%q: answer %s", c.body, w.Body)
		}
	}
	if w := doReq(h, "GET", "/sessions/close", "", tok); w.Code != 405 {
		t.Fatalf("GET /sessions/close: %d", w.Code)
	}
	want := []string{
		"close id=281474976710657 worker=1 listener= upstream=invalid AddrPort client=invalid Prefix by token from 192.0.2.1:1234",
		"close id=0 worker=-1 listener=a upstream=127.0.0.1:1 client=10.0.0.0/8 by token from 192.0.2.1:1234",
	}
	if fmt.Sprint(f.changes) != fmt.Sprint(want) {
		t.Fatalf("closes %q\nwant   %q", f.changes, want)
	}
}

// FuzzControlRequest: any request to a control path (a state change, or
// a close with closing) gets a 2xx or 4xx answer, and a state changes only
// for a well-formed, authorized one.
func FuzzControlRequest(f *testing.F) {
	f.Add("POST", "listener=a&upstream=127.0.0.1:1&state=drain", "Bearer 0123456789abcdef", "application/x-www-form-urlencoded", false)
	f.Add("POST", "listener=a&upstream=[::1]:1&state=enable", "", "application/x-www-form-urlencoded", false)
	f.Add("POST", "%zz&&==;", "Bearer 0123456789abcdef", "multipart/form-data; boundary=x", false)
	f.Add("GET", "", "", "", false)
	f.Add("POST", "id=281474976710657&worker=1", "Bearer 0123456789abcdef", "application/x-www-form-urlencoded", true)
	f.Add("POST", "client=::1/128&upstream=[::1]:9", "Bearer 0123456789abcdef", "application/x-www-form-urlencoded", true)
	f.Fuzz(func(t *testing.T, method, body, auth, ctype string, closing bool) {
		fc := &fakeControl{}
		s, err := New(Config{Listen: "127.0.0.1:0", Control: fc.api(), Token: "0123456789abcdef"}, Sources{})
		if err != nil {
			t.Fatal(err)
		}
		path := controlPath
		if closing {
			path = "/sessions/close"
		}
		req, err := http.NewRequest(method, "http://relayd"+path+"?"+body, strings.NewReader(body))
		if err != nil {
			return // not a request net/http would deliver
		}
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%d for %q %q", w.Code, method, body)
		}
		if len(fc.changes) > 0 && (w.Code != 200 || auth != "Bearer 0123456789abcdef") {
			t.Fatalf("a change with answer %d auth %q", w.Code, auth)
		}
		if closing && len(fc.changes) > 0 && !strings.Contains(fc.changes[0], "worker=") {
			t.Fatalf("close recorded as %q", fc.changes[0])
		}
	})
}
