package admin

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/relay"
)

// UpstreamInfo is one upstream in GET /upstreams. The JSON names are
// stable (README, "Runtime control").
type UpstreamInfo struct {
	Listener         string            `json:"listener"`
	Upstream         string            `json:"upstream"`
	State            string            `json:"state"`  // up, down, draining, disabled
	Health           string            `json:"health"` // up or down, whatever the admin state
	Admin            string            `json:"admin"`  // enabled, draining, disabled
	SessionsActive   int64             `json:"sessions_active"`
	ConnectsInflight int               `json:"connects_inflight"`
	ConnectsQueued   int               `json:"connects_queued"`
	ConnectLimit     int               `json:"connect_limit"`
	Connected        uint64            `json:"connected_total"`
	Failures         map[string]uint64 `json:"failures_total"` // by class
	Checks           uint64            `json:"checks_total"`
	CheckFailures    uint64            `json:"check_failures_total"`
	Transitions      uint64            `json:"transitions_total"`
}

// StateChange is the answer to POST /upstreams/state.
type StateChange struct {
	Listener string `json:"listener"`
	Upstream string `json:"upstream"`
	State    string `json:"state"`    // the admin state now
	Previous string `json:"previous"` // the admin state before
}

// Control is what the control API changes; the binary implements it (in a
// multi-process master, by applying it to every worker).
type Control struct {
	// Upstreams lists the upstreams, with their sessions (nil: not served).
	Upstreams func(ctx context.Context) ([]UpstreamInfo, error)
	// SetUpstream sets one upstream's admin state; who says who asked
	// (the peer of the socket or the TCP client), for the log.
	SetUpstream func(ctx context.Context, listener string, addr netip.AddrPort, st connector.AdminState, who string) (StateChange, error)
	// Config is the effective config, secrets redacted, keyed as the
	// config file (GET /config); nil: not served.
	Config func() (map[string]any, error)
	// Workers are a master's workers (GET /workers); nil: not a master.
	Workers func() []WorkerInfo
	// Sessions answers GET /sessions: one page of the open sessions.
	Sessions func(ctx context.Context, q relay.SessionQuery) (SessionsPage, error)
	// CloseSessions closes the open sessions matching q (POST
	// /sessions/close) and says how many. worker is the worker a session
	// ID belongs to (SessionJSON.Worker), -1 when not given; one process
	// ignores it.
	CloseSessions func(ctx context.Context, q relay.SessionQuery, worker int, who string) (Closed, error)
}

// Closed is the answer to POST /sessions/close.
type Closed struct {
	Closed int `json:"closed"`
}

// ErrWorkerRequired: a session ID was given to a master without the worker
// it belongs to (each worker numbers its own sessions).
var ErrWorkerRequired = errors.New("a session id needs its worker (ids are numbered per worker)")

// SessionJSON is one session in GET /sessions (stable names).
type SessionJSON struct {
	ID        uint64  `json:"id"`
	Listener  string  `json:"listener"`
	Client    string  `json:"client"`
	Upstream  string  `json:"upstream"` // "" until connected
	Worker    int     `json:"worker"`   // with processes: N; else 0
	Loop      int     `json:"loop"`
	State     string  `json:"state"`
	AgeMS     float64 `json:"age_ms"`
	IdleMS    float64 `json:"idle_ms"`
	BytesUp   uint64  `json:"bytes_up"`
	BytesDown uint64  `json:"bytes_down"`
}

// SessionsPage is the answer of GET /sessions, oldest session first.
type SessionsPage struct {
	Total    int           `json:"total"` // sessions matching, over every loop (and worker)
	Offset   int           `json:"offset"`
	Sessions []SessionJSON `json:"sessions"`
}

// PageOf converts a relay's page (now: for the ages).
func PageOf(p relay.SessionsPage, offset int, now time.Time) SessionsPage {
	out := SessionsPage{Total: p.Total, Offset: offset, Sessions: make([]SessionJSON, 0, len(p.Sessions))}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	for _, s := range p.Sessions {
		up := ""
		if s.Upstream.IsValid() {
			up = s.Upstream.String()
		}
		out.Sessions = append(out.Sessions, SessionJSON{ID: s.ID, Listener: s.Listener, Client: s.Client.String(), Upstream: up,
			Loop: s.Loop, State: s.State, AgeMS: ms(now.Sub(s.Began)), IdleMS: ms(s.Idle), BytesUp: s.BytesUp, BytesDown: s.BytesDown})
	}
	return out
}

// ParseSessionQuery reads GET /sessions' parameters: id, listener,
// upstream (ip:port), client (an address or a prefix), offset, limit.
func ParseSessionQuery(v url.Values) (relay.SessionQuery, error) {
	q := relay.SessionQuery{Listener: v.Get("listener")}
	if id := v.Get("id"); id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil || n == 0 {
			return q, fmt.Errorf("id %q: want a session id from /sessions", id)
		}
		q.ID = n
	}
	if u := v.Get("upstream"); u != "" {
		ap, err := netip.ParseAddrPort(u)
		if err != nil {
			return q, fmt.Errorf("upstream %q: %v", u, err)
		}
		q.Upstream = ap
	}
	if c := v.Get("client"); c != "" {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return q, fmt.Errorf("client %q: an address or a prefix", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		q.ClientPrefix = p.Masked()
	}
	for _, f := range []struct {
		key string
		dst *int
		max int
	}{{"offset", &q.Offset, relay.MaxSessionsWindow}, {"limit", &q.Limit, relay.MaxSessionsLimit},
		// window=N: the oldest N at once, for a master merging its
		// workers' pages (offset+limit of the page it was asked for).
		{"window", &q.Limit, relay.MaxSessionsWindow}} {
		if s := v.Get(f.key); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > f.max {
				return q, fmt.Errorf("%s %q: want 0..%d", f.key, s, f.max)
			}
			*f.dst = n
		}
	}
	return q, nil
}

// trustKey marks requests that came in over the control socket.
type trustKey struct{}

// whoKey carries who a request came from (uid/pid of a socket peer).
type whoKey struct{}

// BuildUpstreams joins the connector's snapshot with the relay's session
// counts into the /upstreams answer, sorted by listener and upstream.
func BuildUpstreams(ups []connector.UpstreamStats, sessions map[string]map[netip.AddrPort]int64) []UpstreamInfo {
	out := make([]UpstreamInfo, 0, len(ups))
	for i := range ups {
		u := &ups[i]
		health := "down"
		if u.Up {
			health = "up"
		}
		fails := make(map[string]uint64, connector.NumClasses)
		for c := range connector.NumClasses {
			fails[connector.Class(c).String()] = u.Failures[c]
		}
		out = append(out, UpstreamInfo{
			Listener: u.Listener, Upstream: u.Addr.String(), State: u.State(), Health: health, Admin: u.Admin.String(),
			SessionsActive: sessions[u.Listener][u.Addr], ConnectsInflight: u.Inflight, ConnectsQueued: u.Queued,
			ConnectLimit: u.Limit, Connected: u.Connected, Failures: fails, Checks: u.Checks, CheckFailures: u.CheckFails,
			Transitions: u.Transitions,
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Listener != out[j].Listener {
			return out[i].Listener < out[j].Listener
		}
		return out[i].Upstream < out[j].Upstream
	})
	return out
}

// controlRoutes adds the JSON API to mux: GET /upstreams (?listener=),
// and POST /upstreams/state (listener, upstream, state = enable | drain |
// disable), which is allowed only over the control socket or with the
// bearer token.
func (s *Server) controlRoutes(mux *http.ServeMux) {
	c := s.cfg.Control
	if c == nil {
		return
	}
	if c.Upstreams != nil {
		mux.HandleFunc("GET /upstreams", func(w http.ResponseWriter, r *http.Request) {
			ups, err := c.Upstreams(r.Context())
			if err != nil {
				jsonError(w, http.StatusBadGateway, err)
				return
			}
			if l := r.URL.Query().Get("listener"); l != "" {
				kept := ups[:0]
				for _, u := range ups {
					if u.Listener == l {
						kept = append(kept, u)
					}
				}
				ups = kept
			}
			writeJSON(w, http.StatusOK, ups)
		})
	}
	if c.Sessions != nil {
		mux.HandleFunc("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
			q, err := ParseSessionQuery(r.URL.Query())
			if err != nil {
				jsonError(w, http.StatusBadRequest, err)
				return
			}
			p, err := c.Sessions(r.Context(), q)
			if err != nil {
				jsonError(w, http.StatusBadGateway, err)
				return
			}
			writeSessionsPage(w, p)
		})
	}
	if c.Config != nil {
		mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
			m, err := c.Config()
			if err != nil {
				jsonError(w, http.StatusInternalServerError, err)
				return
			}
			writeJSON(w, http.StatusOK, m)
		})
	}
	if c.Workers != nil {
		mux.HandleFunc("GET /workers", func(w http.ResponseWriter, _ *http.Request) {
			type worker struct {
				Index    int    `json:"worker"`
				PID      int    `json:"pid"` // 0 while none runs
				Ready    bool   `json:"ready"`
				Restarts uint64 `json:"restarts"`
			}
			var out []worker
			for _, x := range c.Workers() {
				out = append(out, worker(x))
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	if c.CloseSessions != nil {
		mux.HandleFunc("POST /sessions/close", func(w http.ResponseWriter, r *http.Request) {
			who, ok := s.change(w, r)
			if !ok {
				return
			}
			q, err := ParseSessionQuery(r.PostForm)
			worker := -1
			if ws := r.PostForm.Get("worker"); err == nil && ws != "" {
				if worker, err = strconv.Atoi(ws); err != nil || worker < 0 {
					err = fmt.Errorf("worker %q: want a worker number from /sessions", ws)
				}
			}
			if err == nil && q.ID == 0 && q.Listener == "" && !q.Upstream.IsValid() && !q.ClientPrefix.IsValid() {
				err = relay.ErrEmptyQuery
			}
			if err != nil {
				jsonError(w, http.StatusBadRequest, err)
				return
			}
			n, err := c.CloseSessions(r.Context(), q, worker, who)
			switch {
			case errors.Is(err, ErrWorkerRequired):
				jsonError(w, http.StatusBadRequest, err)
			case err != nil:
				jsonError(w, http.StatusBadGateway, err)
			default:
				writeJSON(w, http.StatusOK, n)
			}
		})
	}
	if c.SetUpstream != nil {
		mux.HandleFunc("POST /upstreams/state", func(w http.ResponseWriter, r *http.Request) {
			who, ok := s.change(w, r)
			if !ok {
				return
			}
			listener, up, state := r.Form.Get("listener"), r.Form.Get("upstream"), r.Form.Get("state")
			addr, err := netip.ParseAddrPort(up)
			if err != nil || listener == "" {
				jsonError(w, http.StatusBadRequest, fmt.Errorf("want listener=NAME&upstream=IP:PORT&state=enable|drain|disable (upstream %q: %v)", up, err))
				return
			}
			st, err := connector.ParseAdminState(state)
			if err != nil {
				jsonError(w, http.StatusBadRequest, err)
				return
			}
			ch, err := c.SetUpstream(r.Context(), listener, addr, st, who)
			switch {
			case errors.Is(err, connector.ErrUnknownUpstream):
				jsonError(w, http.StatusNotFound, err)
			case err != nil:
				jsonError(w, http.StatusBadGateway, err)
			default:
				writeJSON(w, http.StatusOK, ch)
			}
		})
	}
}

// change admits a state-changing request (authorize) and parses its form;
// it has answered the request when it reports false.
func (s *Server) change(w http.ResponseWriter, r *http.Request) (who string, ok bool) {
	if who, ok = s.authorize(w, r); !ok {
		return "", false
	}
	if err := r.ParseForm(); err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return "", false
	}
	return who, true
}

// authorize admits a state change: over the control socket (its file mode
// already limits who can connect), or over TCP with the configured bearer
// token, compared in constant time. It answers 401 otherwise.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (who string, ok bool) {
	if r.Context().Value(trustKey{}) == true {
		who, _ = r.Context().Value(whoKey{}).(string)
		return "socket " + who, true
	}
	tok := s.cfg.Token
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" || !found || subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="relayd"`)
		msg := "state changes need the control socket or admin.token"
		if tok == "" {
			msg = "state changes over TCP are off (no admin.token): use the control socket"
		}
		jsonError(w, http.StatusUnauthorized, errors.New(msg))
		return "", false
	}
	return "token from " + r.RemoteAddr, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeSessionsPage writes a /sessions answer (up to 1,000 sessions, about
// 200 bytes each) without indentation, yielding the processor every
// yieldEvery sessions. The relay loops are goroutines that return from
// epoll_wait needing a P; with as many Ps as loops, a handler that encodes
// for milliseconds would hold one of them up for as long (Go preempts only
// after 10 ms), and that is what the sessions on it would see
// (loadtest/sessionspoll.sh measures it).
func writeSessionsPage(w http.ResponseWriter, p SessionsPage) {
	const yieldEvery = 64
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	fmt.Fprintf(bw, `{"total":%d,"offset":%d,"sessions":[`, p.Total, p.Offset)
	enc := json.NewEncoder(bw)
	for i := range p.Sessions {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_ = enc.Encode(&p.Sessions[i])
		if i%yieldEvery == yieldEvery-1 {
			runtime.Gosched()
		}
	}
	_, _ = bw.WriteString("]}\n")
	_ = bw.Flush()
}

func jsonError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// ListenControl binds the control socket at path with mode 0600. A stale
// socket file (its process gone) is replaced; one that answers is refused
// — two daemons on one socket — unless takeOver (an upgraded successor,
// whose parent serves it until it exits): then the new socket is bound
// beside it and renamed over it, so the path is never missing. The file is
// not removed on close, since after an upgrade the path is the
// successor's; the next start replaces what a stopped daemon left.
func ListenControl(path string, takeOver bool) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("admin: control socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			if !takeOver {
				return nil, fmt.Errorf("admin: control socket %s: another process serves it", path)
			}
		}
	}
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin: control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("admin: control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("admin: control socket: %w", err)
	}
	return ln, nil
}

// controlContext marks connections of the control socket trusted when
// their peer (SO_PEERCRED) is this process's user or root — what mode 0600
// lets connect to a file socket, and the same rule for a worker's abstract
// socket, which has no file mode — and records the peer for the log.
func controlContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	var cred *syscall.Ucred
	if raw, err := uc.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		})
	}
	if cred == nil || (int(cred.Uid) != os.Getuid() && cred.Uid != 0) {
		return ctx // not trusted: state changes need the token, as over TCP
	}
	who := fmt.Sprintf("uid %d pid %d", cred.Uid, cred.Pid)
	return context.WithValue(context.WithValue(ctx, trustKey{}, true), whoKey{}, who)
}

// UnixDo sends one request to an admin endpoint served on the Unix socket
// path (a worker's, or the control socket) and decodes its JSON answer
// into out. A non-2xx answer is an error carrying the endpoint's message.
func UnixDo(ctx context.Context, path, method, urlPath string, form url.Values, out any) error {
	tr := unixTransport(path)
	defer tr.CloseIdleConnections()
	return Do(ctx, &http.Client{Transport: tr}, method, "http://relayd"+urlPath, "", form, out)
}

// Do sends one request to an admin endpoint (token: the bearer, "" for
// none) and decodes its JSON answer into out.
func Do(ctx context.Context, c *http.Client, method, u, token string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Msg: e.Error}
		}
		return &StatusError{Code: resp.StatusCode, Msg: strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// StatusError is an admin endpoint's refusal.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}

// unixTransport is an HTTP transport to the Unix socket path, one
// connection a request.
func unixTransport(path string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}, DisableKeepAlives: true}
}
