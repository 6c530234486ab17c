package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/relayd/relayd/connector"
)

// fakeControl records state changes of one known upstream.
type fakeControl struct {
	mu      sync.Mutex
	changes []string
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

// FuzzControlRequest: any request to the control path gets a 2xx or 4xx
// answer, and a state changes only for a well-formed, authorized one.
func FuzzControlRequest(f *testing.F) {
	f.Add("POST", "listener=a&upstream=127.0.0.1:1&state=drain", "Bearer 0123456789abcdef", "application/x-www-form-urlencoded")
	f.Add("POST", "listener=a&upstream=[::1]:1&state=enable", "", "application/x-www-form-urlencoded")
	f.Add("POST", "%zz&&==;", "Bearer 0123456789abcdef", "multipart/form-data; boundary=x")
	f.Add("GET", "", "", "")
	f.Fuzz(func(t *testing.T, method, body, auth, ctype string) {
		fc := &fakeControl{}
		s, err := New(Config{Listen: "127.0.0.1:0", Control: fc.api(), Token: "0123456789abcdef"}, Sources{})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(method, "http://relayd"+controlPath+"?"+body, strings.NewReader(body))
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
	})
}
