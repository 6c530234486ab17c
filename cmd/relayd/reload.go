package main

import (
	"fmt"
	"reflect"

	"go.uber.org/zap"

	"github.com/relayd/relayd/configs"
)

// reload applies a new, already validated config without touching
// established sessions: upstreams, balance, retries, per-listener caps and
// edge settings (Update; sessions keep the settings they started with),
// timeouts, the global cap, log level and the access log; listeners
// added or removed (removed ones stop accepting, their sessions finish). What
// needs a restart is named in the log and otherwise ignored.
func (d *daemon) reload(next *configs.Config) (err error) {
	old := d.cfg
	var restart []string
	same := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			restart = append(restart, key)
		}
	}
	same("processes", old.Processes, next.Processes)
	same("relay.loops", old.Relay.Loops, next.Relay.Loops)
	same("relay.buffer_size", old.Relay.BufferSize, next.Relay.BufferSize)
	same("relay.no_delay", old.Relay.NoDelay, next.Relay.NoDelay)
	same("relay.splice", old.Relay.Splice, next.Relay.Splice)
	same("relay.splice_pipes", old.Relay.SplicePipes, next.Relay.SplicePipes)
	same("relay.splice_pipe_size", old.Relay.SplicePipeSize, next.Relay.SplicePipeSize)
	same("relay.trim_after", old.Relay.TrimAfter, next.Relay.TrimAfter)
	same("accept", old.Accept, next.Accept)
	same("connector.workers", old.Connector.Workers, next.Connector.Workers)
	same("connector.max_inflight", old.Connector.MaxInflight, next.Connector.MaxInflight)
	same("connector.queue", old.Connector.Queue, next.Connector.Queue)
	same("connector.pacing", old.Connector.Pacing, next.Connector.Pacing)
	same("connector.upstream_max_inflight", old.Connector.UpstreamMaxInflight, next.Connector.UpstreamMaxInflight)
	same("connector.upstream_queue", old.Connector.UpstreamQueue, next.Connector.UpstreamQueue)
	same("connector.health", old.Connector.Health, next.Connector.Health)
	same("log.format", old.Log.Format, next.Log.Format)
	same("log.output", old.Log.Output, next.Log.Output)
	same("log.ring_size", old.Log.RingSize, next.Log.RingSize)
	same("log.max_size_mb", old.Log.MaxSizeMB, next.Log.MaxSizeMB)
	same("log.max_backups", old.Log.MaxBackups, next.Log.MaxBackups)
	same("log.max_age_days", old.Log.MaxAgeDays, next.Log.MaxAgeDays)
	same("admin", old.Admin, next.Admin)
	same("resolver", old.Resolver, next.Resolver)

	if err := d.log.SetLevel(next.Log.Level); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	// From here on something changes: d.cfg always ends up saying what runs,
	// so the next reload diffs against that, even after a failure halfway
	// (a listener bound, the next one not), and a restart-only key that was
	// not applied keeps its running value (reverting the file to it is then
	// no change at all).
	eff := *next
	keepRestartOnly(&eff, old)
	running := map[string]configs.Listener{}
	for _, l := range old.Listeners {
		running[l.Name] = l
	}
	defer func() {
		eff.Listeners = eff.Listeners[:0:0]
		for _, l := range next.Listeners {
			if r, ok := running[l.Name]; ok {
				eff.Listeners = append(eff.Listeners, r)
				delete(running, l.Name)
			}
		}
		for _, l := range old.Listeners {
			if r, ok := running[l.Name]; ok {
				eff.Listeners = append(eff.Listeners, r)
			}
		}
		d.cfg = &eff
		d.shown.Store(&eff)
		d.addrs = d.relay.Addrs()
	}()
	d.edge.setup(next) // the policies' list of relayd's own addresses follows the new listeners
	d.log.SetAccess(next.Log.Access)
	d.relay.SetAccessRecords(next.Log.AccessInterval, next.Log.AccessOnConnect)
	d.relay.SetTimeouts(next.Relay.IdleTimeout, next.Relay.FinTimeout)
	d.relay.SetConnectTimeout(next.Connector.ConnectTimeout)
	d.relay.SetMaxSessions(d.sessionCap(next))

	var added, removed, updated []string
	seen := map[string]bool{}
	for _, l := range next.Listeners {
		seen[l.Name] = true
		o, ok := running[l.Name]
		switch {
		case ok && o.Listen == l.Listen:
			lc, err := d.listenerConfig(l)
			if err == nil {
				err = d.relay.Update(lc)
			}
			if err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
			running[l.Name] = l
			updated = append(updated, l.Name)
		case ok: // same name, new address: a new socket
			if err := d.relay.RemoveListener(l.Name); err != nil {
				return err
			}
			delete(running, l.Name)
			fallthrough
		default:
			if err := d.addListener(l); err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
			running[l.Name] = l
			added = append(added, l.Name)
		}
	}
	for name := range running {
		if seen[name] {
			continue
		}
		if err := d.relay.RemoveListener(name); err != nil {
			return err
		}
		delete(running, name)
		removed = append(removed, name)
	}
	fields := []zap.Field{zap.Strings("updated", updated), zap.Strings("added", added), zap.Strings("removed", removed)}
	for name, a := range d.relay.Addrs() {
		fields = append(fields, zap.String("listen."+name, a.String()))
	}
	d.log.Z().Info("config reloaded", fields...)
	if len(restart) > 0 {
		d.log.Z().Warn("config reloaded, but these keys need a restart (or a SIGUSR2 upgrade) to take effect; they keep their running values", zap.Strings("keys", restart))
	}
	return nil
}

// keepRestartOnly copies into eff the running values of the keys a reload
// cannot change (the ones reload names as needing a restart).
func keepRestartOnly(eff, running *configs.Config) {
	eff.Processes = running.Processes
	eff.Relay.Loops = running.Relay.Loops
	eff.Relay.BufferSize = running.Relay.BufferSize
	eff.Relay.NoDelay = running.Relay.NoDelay
	eff.Relay.TrimAfter = running.Relay.TrimAfter
	eff.Accept = running.Accept
	eff.Connector.Workers = running.Connector.Workers
	eff.Connector.MaxInflight = running.Connector.MaxInflight
	eff.Connector.Queue = running.Connector.Queue
	eff.Connector.Pacing = running.Connector.Pacing
	eff.Connector.UpstreamMaxInflight = running.Connector.UpstreamMaxInflight
	eff.Connector.UpstreamQueue = running.Connector.UpstreamQueue
	eff.Connector.Health = running.Connector.Health
	eff.Log.Format = running.Log.Format
	eff.Log.Output = running.Log.Output
	eff.Log.RingSize = running.Log.RingSize
	eff.Log.MaxSizeMB = running.Log.MaxSizeMB
	eff.Log.MaxBackups = running.Log.MaxBackups
	eff.Log.MaxAgeDays = running.Log.MaxAgeDays
	eff.Admin = running.Admin
	eff.Resolver = running.Resolver
}
