package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP limits. The endpoint serves a few scrapers and an operator, so the
// bounds only keep a stuck or hostile client from holding resources.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// writeTimeout bounds a response; with pprof on it is lifted, since
	// /debug/pprof/profile?seconds=N writes only after N seconds and pprof
	// refuses a profile longer than the server's write timeout.
	writeTimeout   = 30 * time.Second
	scrapeTimeout  = 10 * time.Second
	scrapesAtOnce  = 4
	maxHeaderBytes = 16 << 10
)

// Server is the admin HTTP endpoint. Create it with New, then Start (or
// StartListener), and stop it with Shutdown or Close.
type Server struct {
	cfg Config
	src Sources
	reg *prometheus.Registry
	// relayReg has relayd's collector alone (RelayPath).
	relayReg *prometheus.Registry
	srv      *http.Server

	// ctl serves the control socket (ServeControl); ctlDone closes when it
	// returns. Both nil without one.
	ctl     *http.Server
	ctlDone chan struct{}

	mu      sync.Mutex
	ln      net.Listener  // mu guards ln, started, ctl, ctlDone
	started bool          // Start was called (or Shutdown/Close ran first)
	done    chan struct{} // closed when the serve goroutine returns
}

// New validates cfg (see Config.Validate: a non-loopback admin.listen
// needs AllowRemote) and builds the handler. It binds nothing.
func New(cfg Config, src Sources) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	// The standard process collector exports process_open_fds and
	// process_max_fds (the soft RLIMIT_NOFILE) from /proc, plus CPU, RSS
	// and start time; the Go collector exports goroutines, GC and heap.
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("admin: register process collector: %w", err)
	}
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("admin: register go collector: %w", err)
	}
	relayReg := prometheus.NewRegistry()
	if cfg.Merger == nil { // a master relays nothing: its relayd_* series are the workers'
		c := NewCollector(src, cfg.Version)
		if err := errors.Join(reg.Register(c), relayReg.Register(c)); err != nil {
			return nil, fmt.Errorf("admin: register relayd collector: %w", err)
		}
	}
	for _, c := range cfg.Collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: register collector: %w", err)
		}
	}
	s := &Server{cfg: cfg, src: src, reg: reg, relayReg: relayReg, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          cfg.ErrorLog,
	}
	if !cfg.Pprof {
		s.srv.WriteTimeout = writeTimeout
	}
	return s, nil
}

// Handler returns the endpoint's routes, for tests and for callers that
// serve them themselves. Only GET and HEAD are accepted anywhere; nothing
// here changes the daemon's state.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	var promLog promhttp.Logger
	if s.cfg.ErrorLog != nil {
		promLog = s.cfg.ErrorLog
	}
	var g prometheus.Gatherer = s.reg
	if m := s.cfg.Merger; m != nil {
		m.own = s.reg
		g = m
	}
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog: promLog,
		// A failing source should not blank the whole scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: scrapesAtOnce,
		Timeout:             scrapeTimeout,
	}))
	mux.Handle(RelayPath, promhttp.HandlerFor(s.relayReg, promhttp.HandlerOpts{
		ErrorLog: promLog, ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: scrapesAtOnce, Timeout: scrapeTimeout,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.src.Ready == nil || s.src.Ready() {
			plain(w, http.StatusOK, "ready\n")
			return
		}
		plain(w, http.StatusServiceUnavailable, "not ready\n")
	})
	if s.cfg.Pprof {
		// Registered by hand on our own mux: the net/http/pprof import
		// also registers on http.DefaultServeMux, which relayd never serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.controlRoutes(mux)
	if s.cfg.Control != nil && s.cfg.Control.Upstreams != nil && !s.cfg.Unix {
		mux.HandleFunc("GET /{$}", serveStatus) // the status page (status.go)
	}
	return readOnly(mux)
}

// controlPaths are the paths that take a POST: state changes, which
// authorize admits only over the control socket or with the token.
var controlPaths = map[string]bool{"/upstreams/state": true, "/sessions/close": true}

// readOnly answers 405 to every method but GET and HEAD (and POST to
// controlPaths). pprof's symbol lookup by POST is refused too: Go profiles
// carry their symbols.
func readOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && controlPaths[r.URL.Path] {
			h.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plain(w, http.StatusMethodNotAllowed, "method not allowed\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// Start binds Config.Listen and serves in a goroutine that Shutdown and
// Close wait for. It returns the bind error (EADDRINUSE, EACCES) at once.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen admin.listen %q: %w", s.cfg.Listen, err)
	}
	if err := s.StartListener(ln); err != nil {
		_ = ln.Close()
		return err
	}
	return nil
}

// StartListener serves on ln, which the Server owns from here on (it is
// closed by Shutdown or Close). For a listener inherited across a
// zero-downtime upgrade (tableflip's Fds.Listen), so the new process can
// serve the admin address the old one still holds. The loopback rule was
// checked on Config.Listen, not on ln.
func (s *Server) StartListener(ln net.Listener) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrStarted
	}
	s.started, s.ln = true, ln
	s.mu.Unlock()
	go func() {
		defer close(s.done)
		// Serve returns ErrServerClosed after Shutdown/Close; anything
		// else is a dead listener, which the HTTP server has logged.
		_ = s.srv.Serve(ln)
	}()
	return nil
}

// ServeControl serves the same routes on ln, the control socket
// (ListenControl), where state changes need no token: the socket's file
// mode decides who may connect. The Server owns ln from here on.
func (s *Server) ServeControl(ln net.Listener) {
	srv := &http.Server{
		Handler: s.srv.Handler, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readHeaderTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: s.cfg.ErrorLog, ConnContext: controlContext,
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.ctl, s.ctlDone = srv, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
}

// stopControl closes the control socket's server and waits for it.
func (s *Server) stopControl() {
	s.mu.Lock()
	srv, done := s.ctl, s.ctlDone
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		<-done
	}
}

// Addr is the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, then closes what is left, and waits for the serve goroutine. It
// returns ctx's error if it had to force. Safe to call twice or
// concurrently, and before Start (Start then fails with ErrStarted).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping()
	s.stopControl()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close() // a long pprof profile, a stuck scrape
	}
	<-s.done
	return err
}

// Close closes the listener and every connection at once and waits for the
// serve goroutine. Safe to call twice.
func (s *Server) Close() error {
	s.stopping()
	s.stopControl()
	err := s.srv.Close()
	<-s.done
	return err
}

// stopping makes a later Start fail; if Start never ran, nothing will
// close done, so it does.
func (s *Server) stopping() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		close(s.done)
	}
}
