package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/relayd/relayd/admin"
	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/connector"
	"github.com/relayd/relayd/internal/master"
	"github.com/relayd/relayd/relay"
)

// controlSocketPath is where admin.socket says the control socket goes:
// "" when off.
func controlSocketPath(cfg *configs.Config) string {
	switch s := cfg.Admin.Socket; s {
	case configs.SocketOff:
		return ""
	case "":
		// systemd's RuntimeDirectory= (the unit sets relayd): a list
		// separated by colons, the first is ours.
		if rd, _, _ := strings.Cut(os.Getenv("RUNTIME_DIRECTORY"), ":"); rd != "" {
			return filepath.Join(rd, "admin.sock")
		}
		return ""
	default:
		return s
	}
}

// serveControlSocket binds the control socket, if configured, and serves
// srv's routes on it. A process started by an upgrade takes the path over
// from its parent, which still serves the old socket until it exits.
func serveControlSocket(cfg *configs.Config, srv *admin.Server, takeOver bool, log *zap.Logger) error {
	path := controlSocketPath(cfg)
	if path == "" {
		return nil
	}
	ln, err := admin.ListenControl(path, takeOver)
	if err != nil {
		return err
	}
	srv.ServeControl(ln)
	log.Info("control socket", zap.String("path", path))
	return nil
}

// daemonControl is one relaying process's control API: its connector's
// upstreams with its relay's session counts, and their admin states.
func daemonControl(d *daemon) *admin.Control {
	return &admin.Control{
		Config: func() (map[string]any, error) { return d.shown.Load().RedactedMap() },
		Sessions: func(_ context.Context, q relay.SessionQuery) (admin.SessionsPage, error) {
			return admin.PageOf(d.relay.Sessions(q), q.Offset, time.Now()), nil
		},
		Upstreams: func(context.Context) ([]admin.UpstreamInfo, error) {
			return admin.BuildUpstreams(d.pool.UpstreamStats(), d.relay.UpstreamSessions()), nil
		},
		CloseSessions: func(_ context.Context, q relay.SessionQuery, _ int, who string) (admin.Closed, error) {
			n, err := d.relay.CloseSessions(q)
			d.log.Z().Info("sessions closed", append(queryFields(q), zap.Int("closed", n), zap.String("by", who))...)
			return admin.Closed{Closed: n}, err
		},
		SetUpstream: func(_ context.Context, listener string, addr netip.AddrPort, st connector.AdminState, who string) (admin.StateChange, error) {
			prev, err := d.pool.SetAdminState(listener, addr, st)
			if err != nil {
				return admin.StateChange{}, err
			}
			d.log.Z().Info("upstream admin state", zap.String("listener", listener), zap.String("upstream", addr.String()),
				zap.String("state", st.String()), zap.String("previous", prev.String()), zap.String("by", who))
			return admin.StateChange{Listener: listener, Upstream: addr.String(), State: st.String(), Previous: prev.String()}, nil
		},
	}
}

// applyAdminStates sets the upstream admin states a master keeps (a
// restarted worker starts with them, not with everything enabled).
func applyAdminStates(d *daemon, states []master.UpstreamState) {
	for _, s := range states {
		addr, err1 := netip.ParseAddrPort(s.Upstream)
		st, err2 := connector.ParseAdminState(s.State)
		if err := errors.Join(err1, err2); err != nil {
			d.log.Z().Warn("upstream admin state from the master", zap.Error(err))
			continue
		}
		if _, err := d.pool.SetAdminState(s.Listener, addr, st); err != nil {
			d.log.Z().Warn("upstream admin state from the master", zap.Error(err)) // removed by a reload since
		}
	}
}

// masterControl is a master's control API: every question goes to every
// ready worker (over its admin socket) and the answers are added up; a
// state change is applied to each, and kept for workers started later.
type masterControl struct {
	m      *relayMaster
	mu     sync.Mutex // guards states
	states map[[2]string]string
}

func (c *masterControl) api() *admin.Control {
	return &admin.Control{Upstreams: c.upstreams, SetUpstream: c.set,
		Config:  func() (map[string]any, error) { return c.m.shown.Load().RedactedMap() },
		Workers: c.m.workerInfo, Sessions: c.sessions, CloseSessions: c.closeSessions}
}

// queryFields are a session query's filters, for the log.
func queryFields(q relay.SessionQuery) []zap.Field {
	var f []zap.Field
	if q.ID != 0 {
		f = append(f, zap.Uint64("id", q.ID))
	}
	if q.Listener != "" {
		f = append(f, zap.String("listener", q.Listener))
	}
	if q.Upstream.IsValid() {
		f = append(f, zap.String("upstream", q.Upstream.String()))
	}
	if q.ClientPrefix.IsValid() {
		f = append(f, zap.String("client", q.ClientPrefix.String()))
	}
	return f
}

// sessionForm is q as the form of a worker's /sessions requests.
func sessionForm(q relay.SessionQuery) url.Values {
	v := url.Values{}
	if q.ID != 0 {
		v.Set("id", strconv.FormatUint(q.ID, 10))
	}
	if q.Listener != "" {
		v.Set("listener", q.Listener)
	}
	if q.Upstream.IsValid() {
		v.Set("upstream", q.Upstream.String())
	}
	if q.ClientPrefix.IsValid() {
		v.Set("client", q.ClientPrefix.String())
	}
	return v
}

// closeSessions closes the matches in every ready worker, or in the one
// named (a session ID is that worker's).
func (c *masterControl) closeSessions(ctx context.Context, q relay.SessionQuery, worker int, who string) (admin.Closed, error) {
	workers := c.m.readyWorkers()
	if worker >= 0 {
		workers = slices.DeleteFunc(workers, func(w int) bool { return w != worker })
	} else if q.ID != 0 {
		return admin.Closed{}, admin.ErrWorkerRequired
	}
	var out admin.Closed
	var errs []error
	for _, w := range workers {
		var n admin.Closed
		if err := admin.UnixDo(ctx, c.m.workerSocket(w), "POST", "/sessions/close", sessionForm(q), &n); err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w, err))
			continue
		}
		out.Closed += n.Closed
	}
	c.m.log.Z().Info("sessions closed", append(queryFields(q), zap.Int("closed", out.Closed), zap.String("by", who),
		zap.Int("worker", worker), zap.Errors("failed", errs))...)
	return out, errors.Join(errs...)
}

// kept returns the admin states to hand a worker at start.
func (c *masterControl) kept() []master.UpstreamState {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]master.UpstreamState, 0, len(c.states))
	for k, v := range c.states {
		out = append(out, master.UpstreamState{Listener: k[0], Upstream: k[1], State: v})
	}
	return out
}

func (c *masterControl) upstreams(ctx context.Context) ([]admin.UpstreamInfo, error) {
	var all []admin.UpstreamInfo
	order := map[[2]string]int{}
	for _, w := range c.m.readyWorkers() {
		var ups []admin.UpstreamInfo
		if err := admin.UnixDo(ctx, c.m.workerSocket(w), "GET", "/upstreams", nil, &ups); err != nil {
			return nil, fmt.Errorf("worker %d: %w", w, err)
		}
		for _, u := range ups {
			k := [2]string{u.Listener, u.Upstream}
			i, ok := order[k]
			if !ok {
				order[k] = len(all)
				all = append(all, u)
				continue
			}
			a := &all[i]
			a.SessionsActive += u.SessionsActive
			a.ConnectsInflight += u.ConnectsInflight
			a.ConnectsQueued += u.ConnectsQueued
			a.ConnectLimit += u.ConnectLimit
			a.Connected += u.Connected
			a.Checks += u.Checks
			a.CheckFailures += u.CheckFailures
			a.Transitions += u.Transitions
			for cl, n := range u.Failures {
				a.Failures[cl] += n
			}
			if u.Health == "down" { // down in any worker is down (as relayd_upstream_up's minimum)
				a.Health = "down"
			}
		}
	}
	for i := range all {
		a := &all[i]
		a.State = a.Health
		if a.Admin != connector.Enabled.String() {
			a.State = a.Admin
		}
	}
	return all, nil
}

func (c *masterControl) set(ctx context.Context, listener string, addr netip.AddrPort, st connector.AdminState, who string) (admin.StateChange, error) {
	key := [2]string{listener, addr.String()}
	// Kept first: a worker that starts while this runs gets it in its hello.
	c.mu.Lock()
	if c.states == nil {
		c.states = map[[2]string]string{}
	}
	old, had := c.states[key]
	if st == connector.Enabled {
		delete(c.states, key)
	} else {
		c.states[key] = st.String()
	}
	c.mu.Unlock()
	restore := func() {
		c.mu.Lock()
		if had {
			c.states[key] = old
		} else {
			delete(c.states, key)
		}
		c.mu.Unlock()
	}
	form := url.Values{"listener": {listener}, "upstream": {addr.String()}, "state": {st.String()}}
	var out admin.StateChange
	var errs []error
	done := 0
	for _, w := range c.m.readyWorkers() {
		var ch admin.StateChange
		err := admin.UnixDo(ctx, c.m.workerSocket(w), "POST", "/upstreams/state", form, &ch)
		var se *admin.StatusError
		if errors.As(err, &se) && se.Code == 404 {
			restore()
			return admin.StateChange{}, fmt.Errorf("%w: %s %v", connector.ErrUnknownUpstream, listener, addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", w, err))
			continue
		}
		out = ch
		done++
	}
	if done == 0 && len(errs) == 0 {
		// None ready now: the state is kept, and each worker starts with it.
		out = admin.StateChange{Listener: listener, Upstream: addr.String(), State: st.String(), Previous: "?"}
	}
	c.m.log.Z().Info("upstream admin state", zap.String("listener", listener), zap.String("upstream", addr.String()),
		zap.String("state", st.String()), zap.String("previous", out.Previous), zap.String("by", who), zap.Int("workers", done), zap.Errors("failed", errs))
	return out, errors.Join(errs...)
}

// sessions asks every worker for its oldest offset+limit matches and
// merges them by age: the same page one process with all the sessions
// would give.
func (c *masterControl) sessions(ctx context.Context, q relay.SessionQuery) (admin.SessionsPage, error) {
	if q.Limit <= 0 {
		q.Limit = relay.DefaultSessionsLimit
	}
	v := sessionForm(q)
	v.Set("window", strconv.Itoa(q.Offset+q.Limit))
	out := admin.SessionsPage{Offset: q.Offset}
	var all []admin.SessionJSON
	for _, w := range c.m.readyWorkers() {
		var p admin.SessionsPage
		if err := admin.UnixDo(ctx, c.m.workerSocket(w), "GET", "/sessions?"+v.Encode(), nil, &p); err != nil {
			return out, fmt.Errorf("worker %d: %w", w, err)
		}
		out.Total += p.Total
		for _, s := range p.Sessions {
			s.Worker = w
			all = append(all, s)
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].AgeMS > all[j].AgeMS })
	if q.Offset < len(all) {
		out.Sessions = all[q.Offset:min(len(all), q.Offset+q.Limit)]
	} else {
		out.Sessions = []admin.SessionJSON{}
	}
	return out, nil
}
