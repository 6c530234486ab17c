package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/admin"
	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/internal/master"
	"github.com/relayd/relayd/internal/shm"
	"github.com/relayd/relayd/logging"
)

// relayMaster is relayd with processes ≥ 2: it binds the sockets, keeps
// the workers running (internal/master), merges their metrics, and turns
// signals into messages to them. It relays no bytes.
type relayMaster struct {
	ctl    masterControl                  // upstream admin states, kept for every worker
	shown  atomic.Pointer[configs.Config] // cfg for /config, read from the admin's goroutines
	log    *logging.Logger
	opts   configs.LoadOptions
	n      int
	upg    *tableflip.Upgrader
	table  *shm.Table
	sup    *master.Supervisor
	merger *admin.Merger
	adm    *admin.Server
	admFDs []int // worker i's metrics socket; nil without an admin endpoint

	// Read by hello under the supervisor's lock; written only inside
	// Update's apply (or before Start), on the main goroutine.
	cfg     *configs.Config
	cfgJSON []byte
	gen     int
	groups  map[string]*group
	keys    map[string]int // the shared table's key of each listener name ever seen
	nextKey int

	draining sync.Once
	stopping chan struct{} // closed once the master drains: /readyz 503
}

// group is one listener's sockets, socket i being worker i's.
type group struct {
	listen string
	addr   netip.AddrPort
	fds    []int
}

func serveMaster(cfg *configs.Config, opts configs.LoadOptions, pidFile string, log *logging.Logger) error {
	m := &relayMaster{log: log, opts: opts, n: cfg.Processes.Workers(), groups: map[string]*group{},
		keys: map[string]int{}, nextKey: 1, stopping: make(chan struct{})}
	m.ctl.m = m
	var err error
	if m.upg, err = tableflip.New(tableflip.Options{PIDFile: pidFile}); err != nil {
		return startFailed(log, err)
	}
	defer m.upg.Stop()
	if m.table, err = shm.Create(m.n, shm.MaxKeys); err != nil {
		return startFailed(log, err)
	}
	defer m.table.Close()
	defer m.closeGroups()
	for _, l := range cfg.Listeners {
		g, err := m.bind(l, true, cfg.Accept.Backlog)
		if err != nil {
			return startFailed(log, err)
		}
		m.groups[l.Name] = g
		m.keys[l.Name] = m.nextKey
		m.nextKey++
	}
	m.setConfig(cfg)
	if cfg.Admin.Listen != "" {
		if err := m.startAdmin(cfg); err != nil {
			return startFailed(log, err)
		}
		defer m.stopAdmin()
	}
	m.sup, err = master.New(master.Config{Args: []string{"worker"}, Workers: m.n, Hello: m.hello, Exited: m.exited, Log: log.Z()})
	if err != nil {
		return startFailed(log, err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	m.sup.Start()
	for !m.sup.AllReady() {
		select {
		case <-m.sup.ReadyChanged():
		case err := <-m.sup.Dead():
			m.sup.Stop(time.Now().Add(cfg.Shutdown.Timeout))
			return startFailed(log, err)
		case sig := <-sigs:
			if sig == syscall.SIGTERM || sig == syscall.SIGINT {
				return m.drain(sig.String(), false)
			}
		}
	}
	if err := m.upg.Ready(); err != nil {
		m.sup.Stop(time.Now())
		return startFailed(log, err)
	}
	fields := []zap.Field{zap.Int("processes", m.n), zap.Int("loops_per_worker", cfg.Relay.LoopCount()),
		zap.Int("max_sessions", cfg.Limits.MaxSessions)}
	for _, name := range m.groupNames() {
		fields = append(fields, zap.String("listen."+name, m.groups[name].addr.String()))
	}
	log.Z().Info("relayd ready", fields...)
	// A killed worker's counters in the totals are at most this old; each
	// refresh costs a worker about a millisecond of CPU.
	refresh := time.NewTicker(10 * time.Second)
	defer refresh.Stop()
	upgradeDone := make(chan error, 1)
	upgrading := false
	for {
		select {
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				m.reload()
			case syscall.SIGUSR2:
				if upgrading {
					log.Z().Warn("upgrade already in progress")
					continue
				}
				upgrading = true
				log.Z().Info("upgrade: starting the new master")
				go func() { upgradeDone <- m.upg.Upgrade() }()
			default:
				if upgrading {
					m.upg.Stop() // kills a successor that is not ready yet
					if err := <-upgradeDone; err == nil {
						<-m.upg.Exit()
						return m.drain("upgrade, then "+sig.String(), true)
					}
				}
				return m.drain(sig.String(), false)
			}
		case err := <-upgradeDone:
			upgrading = false
			if err != nil {
				log.Z().Error("upgrade failed, still serving", zap.Error(err))
			}
		case <-m.upg.Exit():
			return m.drain("upgrade", true)
		case err := <-m.sup.Dead():
			log.Z().Error("workers cannot be kept running", zap.Error(err))
			m.drain("workers failing", false)
			return err
		case <-refresh.C:
			if m.merger != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				m.merger.Refresh(ctx)
				cancel()
			}
		}
	}
}

// drainGrace is how long past shutdown.timeout a worker may take to exit
// (its log is flushed with a 2 s bound) before the master kills it.
const drainGrace = 3 * time.Second

func startFailed(log *logging.Logger, err error) error {
	log.Z().Error("startup failed", zap.Error(err))
	return err
}

// drain stops the workers: each finishes its sessions within
// shutdown.timeout and is killed if it has not by then. handoff: a successor
// serves on the sockets, so they stay open for it; otherwise they stop
// listening at once (new clients are refused, not queued for no one).
func (m *relayMaster) drain(why string, handoff bool) error {
	m.draining.Do(func() { close(m.stopping) })
	timeout := m.cfg.Shutdown.Timeout
	// First stop listening, then say so: the line means it is done.
	if handoff {
		m.stopAdmin() // probes reach the successor's endpoint
	} else {
		for _, g := range m.groups {
			g.shutdown()
		}
	}
	m.log.Z().Info("draining", zap.String("cause", why), zap.Duration("timeout", timeout), zap.Int("workers", m.n))
	// The workers' own drain ends at shutdown.timeout; a few seconds for
	// them to flush their logs and exit, then whoever is left is killed.
	killed := m.sup.Stop(time.Now().Add(timeout + drainGrace))
	m.log.Z().Info("relayd stopped", zap.Int("workers_killed", killed))
	return nil
}

// bind makes listener l's group — with inherit, the predecessor's sockets
// if an upgrade passed any, else new ones with the given listen backlog —
// and offers it to a future successor.
func (m *relayMaster) bind(l configs.Listener, inherit bool, backlog int) (*group, error) {
	addr, err := netip.ParseAddrPort(normalizeListen(l.Listen))
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	g := &group{listen: l.Listen}
	if inherit {
		g.fds = inheritedFDs(m.upg, l.Name)
	}
	if len(g.fds) > 0 {
		if g.addr, err = master.AdoptGroup(g.fds, addr, m.n); err != nil {
			master.CloseAll(g.fds)
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
	} else if g.fds, g.addr, err = master.BindGroup(addr, m.n, backlog); err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	for i, fd := range g.fds {
		if err := publishFD(m.upg, fdName(l.Name, i), fd); err != nil {
			master.CloseAll(g.fds)
			return nil, err
		}
	}
	return g, nil
}

// shutdown stops g's sockets listening, for every process that holds
// them: new clients are refused, queued ones reset.
func (g *group) shutdown() {
	for _, fd := range g.fds {
		_ = unix.Shutdown(fd, unix.SHUT_RD)
	}
}

func (m *relayMaster) closeGroups() {
	for _, g := range m.groups {
		master.CloseAll(g.fds)
	}
}

func (m *relayMaster) groupNames() []string {
	names := make([]string, 0, len(m.groups))
	for n := range m.groups {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// The shared table's key of a listener name is assigned on first sight
// and never reused, so sessions counted under a listener that a reload
// removed never mix with a new one's.

// setConfig makes cfg the state workers are told, and its caps the table's.
func (m *relayMaster) setConfig(cfg *configs.Config) {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a plain struct of strings, numbers and slices
	}
	m.cfg, m.cfgJSON = cfg, b
	m.shown.Store(cfg)
	m.gen++
	m.table.SetLimit(shm.Global, int64(max(cfg.Limits.MaxSessions, 0))) // -1 (none) and 0 (per worker, from its fds) are no shared cap
	for _, l := range cfg.Listeners {
		m.table.SetLimit(m.keys[l.Name], int64(l.MaxSessions))
	}
}

// hello is worker w's first message: the config, its socket of every
// listener, its admin socket and the session table.
func (m *relayMaster) hello(w int) (master.Msg, []int) {
	msg := master.Msg{Type: master.MsgHello, Worker: w, Workers: m.n, Gen: m.gen, Config: m.cfgJSON, Admin: -1, Upstreams: m.ctl.kept()}
	var fds []int
	for _, name := range m.groupNames() {
		msg.Listeners = append(msg.Listeners, master.ListenerFD{Name: name, Key: m.keys[name], FD: len(fds)})
		fds = append(fds, m.groups[name].fds[w])
	}
	if m.admFDs != nil {
		msg.Admin = len(fds)
		fds = append(fds, m.admFDs[w])
	}
	msg.Table = len(fds)
	fds = append(fds, m.table.FD())
	_, msg.TableKeys = m.table.Dims()
	return msg, fds
}

// exited forgets what worker w counted: its sessions are gone.
func (m *relayMaster) exited(w, _ int, _ error) {
	m.table.Reset(w)
	if m.merger != nil {
		m.merger.Retire(w)
	}
}

// reload validates the config once, here, then has every worker apply
// exactly it. An invalid file changes nothing anywhere.
func (m *relayMaster) reload() {
	next, err := configs.Load(m.opts)
	if err != nil {
		m.log.Z().Error("reload failed, keeping the running config", zap.Error(err))
		return
	}
	if err := m.log.SetLevel(next.Log.Level); err != nil {
		m.log.Z().Error("reload failed, keeping the running config", zap.Error(err))
		return
	}
	eff := *next
	keepRestartOnly(&eff, m.cfg)
	// New keys and groups are made aside and swapped in under the
	// supervisor's lock (Update), where hello reads them.
	keys, nextKey := maps.Clone(m.keys), m.nextKey
	groups := map[string]*group{}
	var fresh []string
	var bound []*group
	for _, l := range eff.Listeners {
		if g, ok := m.groups[l.Name]; ok && g.listen == l.Listen {
			groups[l.Name] = g
			continue
		}
		var kerr error
		if _, ok := keys[l.Name]; !ok {
			if nextKey >= shm.MaxKeys {
				kerr = fmt.Errorf("listener %s: more than %d listener names since the start; restart relayd", l.Name, shm.MaxKeys-1)
			}
			keys[l.Name] = nextKey
			nextKey++
		}
		g, err := m.bind(l, false, eff.Accept.Backlog)
		if err = errors.Join(kerr, err); err != nil {
			for _, g := range bound {
				master.CloseAll(g.fds)
			}
			m.log.Z().Error("reload failed, keeping the running config", zap.Error(err))
			return
		}
		groups[l.Name], fresh = g, append(fresh, l.Name)
		bound = append(bound, g)
	}
	var gone []*group
	for name, g := range m.groups {
		if groups[name] != g {
			gone = append(gone, g)
		}
	}
	slices.Sort(fresh)
	errs := m.sup.Update(func() {
		m.groups, m.keys, m.nextKey = groups, keys, nextKey
		m.setConfig(&eff)
	}, func(w int) (master.Msg, []int) {
		msg := master.Msg{Type: master.MsgReload, Gen: m.gen, Config: m.cfgJSON}
		var fds []int
		for _, name := range fresh {
			msg.Listeners = append(msg.Listeners, master.ListenerFD{Name: name, Key: m.keys[name], FD: len(fds)})
			fds = append(fds, groups[name].fds[w])
		}
		return msg, fds
	}, 15*time.Second)
	// The workers have let go of the removed and moved listeners: stop them
	// listening for good and close the master's copies.
	for _, g := range gone {
		g.shutdown()
		master.CloseAll(g.fds)
	}
	fields := []zap.Field{zap.Int("gen", m.gen), zap.Strings("new_sockets", fresh)}
	for w, err := range errs {
		fields = append(fields, zap.NamedError("worker_"+strconv.Itoa(w), err))
	}
	if len(errs) > 0 {
		m.log.Z().Error("config reloaded, but some workers failed to apply it", fields...)
		return
	}
	m.log.Z().Info("config reloaded", fields...)
}

// startAdmin serves the merged metrics and readiness on admin.listen (a
// socket a successor inherits) and makes each worker a Unix socket to
// serve its own metrics on.
func (m *relayMaster) startAdmin(cfg *configs.Config) error {
	for i := range m.n {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: m.workerSocket(i), Net: "unix"})
		if err != nil {
			return fmt.Errorf("admin: worker socket: %w", err)
		}
		// A plain copy of the descriptor, held for the master's life (not
		// ln.File: an *os.File's Fd would switch the socket to blocking).
		fd := -1
		rc, err := ln.SyscallConn()
		if err == nil {
			cerr := rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
			err = errors.Join(err, cerr)
		}
		ln.Close()
		if err != nil {
			return fmt.Errorf("admin: worker socket: %w", err)
		}
		unix.CloseOnExec(fd)
		m.admFDs = append(m.admFDs, fd)
	}
	m.merger = admin.NewMerger(m.scrape)
	var err error
	m.adm, err = admin.New(admin.Config{
		Listen: cfg.Admin.Listen, AllowRemote: cfg.Admin.AllowRemote, Pprof: cfg.Admin.Pprof,
		Version: versionString(), ErrorLog: zap.NewStdLog(m.log.Z()),
		Merger: m.merger, Collectors: []prometheus.Collector{admin.NewWorkersCollector(m.workerInfo)},
		Control: m.ctl.api(), Token: cfg.Admin.Token,
	}, admin.Sources{Ready: m.ready})
	if err != nil {
		return err
	}
	if err := serveControlSocket(cfg, m.adm, m.upg.HasParent(), m.log.Z()); err != nil {
		return err
	}
	ln, err := m.upg.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	if err := m.adm.StartListener(ln); err != nil {
		return err
	}
	m.log.Z().Info("admin endpoint", zap.String("listen", ln.Addr().String()), zap.Int("workers", m.n))
	return nil
}

func (m *relayMaster) stopAdmin() {
	if m.adm != nil {
		_ = m.adm.Close()
	}
}

// readyWorkers are the indexes of the workers running and ready.
func (m *relayMaster) readyWorkers() []int {
	var out []int
	if m.sup == nil {
		return out
	}
	for _, s := range m.sup.Status() {
		if s.PID != 0 && s.Ready {
			out = append(out, s.Index)
		}
	}
	return out
}

// workerSocket is worker i's metrics socket: in the abstract namespace, so
// that nothing is left on disk whatever ends the master. It serves read-only
// metrics, as the loopback admin port does, to local processes only.
func (m *relayMaster) workerSocket(i int) string {
	return "@relayd-" + strconv.Itoa(os.Getpid()) + "-w" + strconv.Itoa(i)
}

// ready: every worker serves and the master is not draining.
func (m *relayMaster) ready() bool {
	select {
	case <-m.stopping:
		return false
	default:
		return m.sup != nil && m.sup.AllReady()
	}
}

func (m *relayMaster) workerInfo() []admin.WorkerInfo {
	var out []admin.WorkerInfo
	if m.sup == nil {
		return out
	}
	for _, s := range m.sup.Status() {
		out = append(out, admin.WorkerInfo{Index: s.Index, PID: s.PID, Ready: s.Ready, Restarts: s.Restarts})
	}
	return out
}

// scrape fetches the metrics of every running worker at once: all of them
// (full) or relayd's own.
func (m *relayMaster) scrape(ctx context.Context, full bool) map[int]admin.Families {
	path := admin.RelayPath
	if full {
		path = "/metrics"
	}
	out := map[int]admin.Families{}
	if m.sup == nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range m.sup.Status() {
		if s.PID == 0 || !s.Ready {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := admin.ScrapeUnix(ctx, m.workerSocket(s.Index), path)
			if err != nil {
				return // left out of this scrape; relayd_worker_ready says why not
			}
			mu.Lock()
			out[s.Index] = f
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}
