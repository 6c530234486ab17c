package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/admin"
	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/internal/master"
	"github.com/relayd/relayd/internal/shm"
	"github.com/relayd/relayd/logging"
)

// controlFD is where a worker finds its control socket (the master's
// exec.Cmd ExtraFiles[0]).
const controlFD = 3

// workerShare is what makes a daemon one worker of several: its row of the
// shared session table and the table's key of each listener.
type workerShare struct {
	slot *shm.Slot
	keys map[string]int
}

// workerFDs hands a worker's daemon the listening sockets its master sent:
// one per listener. Nothing is published: the master holds the sockets and
// hands them to a successor itself.
type workerFDs struct{ fds map[string]int }

func (w *workerFDs) inherited(name string, _ netip.AddrPort) []int {
	fd, ok := w.fds[name]
	if !ok {
		return nil
	}
	delete(w.fds, name) // the relay owns it from here on
	return []int{fd}
}

func (w *workerFDs) publish(string, []int) error { return nil }

// add records the sockets of m (hello or reload), fds being the message's.
func (w *workerFDs) add(share *workerShare, m master.Msg, fds []int) error {
	for _, l := range m.Listeners {
		if l.FD < 0 || l.FD >= len(fds) {
			return fmt.Errorf("worker: listener %s: socket %d of %d", l.Name, l.FD, len(fds))
		}
		if old, ok := w.fds[l.Name]; ok {
			_ = syscall.Close(old)
		}
		w.fds[l.Name] = fds[l.FD]
		share.keys[l.Name] = l.Key
	}
	return nil
}

// A worker is started as /proc/self/exe (the master's very binary, even if
// the file was replaced since), which makes the kernel name it "exe"; init
// runs on the main thread, whose name is the process's in ps and top.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("relayd\x00")[0])), 0, 0, 0)
	}
}

func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "worker",
		Short:  "A worker of a multi-process relayd (started by the master, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(*cobra.Command, []string) error { return runWorker() },
	}
}

// workerLogOutput is worker w's log output: the master's stream, or for a
// file "<file>.w<i>" beside it (each file rotated by its own process).
func workerLogOutput(out string, w int) string {
	if out == "" || out == "stderr" || out == "stdout" {
		return out
	}
	ext := filepath.Ext(out)
	return strings.TrimSuffix(out, ext) + ".w" + strconv.Itoa(w) + ext
}

func runWorker() error {
	ctl := master.NewConn(controlFD)
	hello, fds, err := ctl.Recv()
	if err != nil {
		return fmt.Errorf("worker: no hello from the master: %w", err)
	}
	fail := func(err error) error {
		_ = ctl.Send(master.Msg{Type: master.MsgFailed, Error: err.Error()}, nil)
		return err
	}
	if hello.Type != master.MsgHello {
		return fail(fmt.Errorf("worker: first message is %q, want hello", hello.Type))
	}
	var cfg configs.Config
	if err := json.Unmarshal(hello.Config, &cfg); err != nil {
		return fail(fmt.Errorf("worker: config: %w", err))
	}
	lc := loggingConfig(&cfg)
	lc.Output = workerLogOutput(lc.Output, hello.Worker)
	// The ring is split among the workers (configs/relayd.yaml log.ring_size):
	// each writes its own share of the lines.
	lc.RingSize = max(cfg.Log.RingSize/max(hello.Workers, 1), min(cfg.Log.RingSize, 1024))
	log, err := logging.New(lc)
	if err != nil {
		return fail(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = log.Close(ctx)
	}()
	log.SetFields(zap.Int("worker", hello.Worker))
	if hello.Table < 0 || hello.Table >= len(fds) {
		return fail(errors.New("worker: the hello has no session table"))
	}
	table, err := shm.Open(fds[hello.Table], hello.Workers, hello.TableKeys)
	if err != nil {
		return fail(err)
	}
	defer table.Close()
	slot, err := table.Slot(hello.Worker)
	if err != nil {
		return fail(err)
	}
	share := &workerShare{slot: slot, keys: map[string]int{}}
	wfds := &workerFDs{fds: map[string]int{}}
	if err := wfds.add(share, hello, fds); err != nil {
		return fail(err)
	}
	d, err := buildDaemon(&daemon{cfg: &cfg, log: log, fds: wfds, share: share})
	if err != nil {
		log.Z().Error("worker start failed", zap.Error(err))
		return fail(err)
	}
	// The sockets are the master's for its whole life: stopping here must
	// only close this process's copies (a replacement takes them over).
	d.relay.HandOff()
	applyAdminStates(d, hello.Upstreams)
	var adm *admin.Server
	if hello.Admin >= 0 && hello.Admin < len(fds) {
		if adm, err = workerAdmin(d, fds[hello.Admin]); err != nil {
			d.close()
			return fail(err)
		}
		defer func() { _ = adm.Close() }()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	if err := d.start(); err != nil {
		return fail(err)
	}
	d.ready.Store(true)
	if err := ctl.Send(master.Msg{Type: master.MsgReady, PID: os.Getpid()}, nil); err != nil {
		return d.drain("master gone before ready")
	}
	type ctlMsg struct {
		m   master.Msg
		fds []int
	}
	msgs := make(chan ctlMsg)
	go func() {
		defer close(msgs)
		for {
			m, fds, err := ctl.Recv()
			if err != nil {
				return
			}
			msgs <- ctlMsg{m, fds}
		}
	}()
	for {
		select {
		case cm, ok := <-msgs:
			if !ok {
				return d.drain("the master's control socket closed")
			}
			switch cm.m.Type {
			case master.MsgReload:
				err := workerReload(d, wfds, share, cm.m, cm.fds)
				reply := master.Msg{Type: master.MsgReloaded}
				if err != nil {
					reply.Error = err.Error()
					log.Z().Error("reload failed, keeping the running config", zap.Error(err))
				}
				_ = ctl.Send(reply, nil)
			case master.MsgDrain:
				return d.drain("the master said drain")
			}
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP, syscall.SIGUSR2:
				log.Z().Warn("signal ignored: a worker takes its config from the master; signal the master", zap.Stringer("signal", sig), zap.Int("master_pid", os.Getppid()))
			default:
				return d.drain(sig.String())
			}
		case err := <-d.relay.Dead():
			return d.die(err)
		case err := <-d.pool.Dead():
			return d.die(err)
		}
	}
}

// workerReload applies a config the master validated, with the sockets of
// the listeners it added or moved.
func workerReload(d *daemon, wfds *workerFDs, share *workerShare, m master.Msg, fds []int) error {
	var next configs.Config
	if err := json.Unmarshal(m.Config, &next); err != nil {
		master.CloseAll(fds)
		return fmt.Errorf("worker: reload config: %w", err)
	}
	if err := wfds.add(share, m, fds); err != nil {
		master.CloseAll(fds)
		return err
	}
	return d.reload(&next)
}

// workerAdmin serves this worker's metrics on the Unix socket the master
// made for it (and scrapes).
func workerAdmin(d *daemon, fd int) (*admin.Server, error) {
	f := os.NewFile(uintptr(fd), "worker-admin")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("worker: admin socket: %w", err)
	}
	srv, err := admin.New(admin.Config{Unix: true, Version: versionString(), ErrorLog: zap.NewStdLog(d.log.Z()),
		Control: daemonControl(d)}, daemonSources(d))
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Served as a control socket: the master (same user) asks it for its
	// upstreams and passes state changes on; other users are not trusted.
	srv.ServeControl(ln)
	return srv, nil
}
