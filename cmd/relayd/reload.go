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
func (d *daemon) reload(next *configs.Config) error {
	old := d.cfg
	var restart []string
	same := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			restart = append(restart, key)
		}
	}
	same("relay.loops", old.Relay.Loops, next.Relay.Loops)
	same("relay.buffer_size", old.Relay.BufferSize, next.Relay.BufferSize)
	same("relay.no_delay", old.Relay.NoDelay, next.Relay.NoDelay)
	same("accept", old.Accept, next.Accept)
	same("connector.workers", old.Connector.Workers, next.Connector.Workers)
	same("connector.max_inflight", old.Connector.MaxInflight, next.Connector.MaxInflight)
	same("connector.queue", old.Connector.Queue, next.Connector.Queue)
	same("log.format", old.Log.Format, next.Log.Format)
	same("log.output", old.Log.Output, next.Log.Output)
	same("log.ring_size", old.Log.RingSize, next.Log.RingSize)
	same("admin", old.Admin, next.Admin)

	same("resolver", old.Resolver, next.Resolver)
	setupEdge(next) // the policies' list of relayd's own addresses follows the new listeners

	if err := d.log.SetLevel(next.Log.Level); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	d.log.SetAccess(next.Log.Access)
	d.relay.SetTimeouts(next.Relay.IdleTimeout, next.Relay.FinTimeout)
	d.relay.SetConnectTimeout(next.Connector.ConnectTimeout)
	d.relay.SetMaxSessions(next.Limits.MaxSessions)

	oldBy := map[string]configs.Listener{}
	for _, l := range old.Listeners {
		oldBy[l.Name] = l
	}
	var added, removed, updated []string
	for _, l := range next.Listeners {
		o, ok := oldBy[l.Name]
		delete(oldBy, l.Name)
		switch {
		case ok && o.Listen == l.Listen:
			lc, err := listenerConfig(l)
			if err == nil {
				err = d.relay.Update(lc)
			}
			if err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
			updated = append(updated, l.Name)
		case ok: // same name, new address: a new socket
			if err := d.relay.RemoveListener(l.Name); err != nil {
				return err
			}
			fallthrough
		default:
			if err := d.addListener(l); err != nil {
				return fmt.Errorf("listener %s: %w", l.Name, err)
			}
			added = append(added, l.Name)
		}
	}
	for name := range oldBy {
		if err := d.relay.RemoveListener(name); err != nil {
			return err
		}
		removed = append(removed, name)
	}
	d.cfg = next
	d.addrs = d.relay.Addrs()
	fields := []zap.Field{zap.Strings("updated", updated), zap.Strings("added", added), zap.Strings("removed", removed)}
	for name, a := range d.addrs {
		fields = append(fields, zap.String("listen."+name, a.String()))
	}
	d.log.Z().Info("config reloaded", fields...)
	if len(restart) > 0 {
		d.log.Z().Warn("config reloaded, but these keys need a restart (SIGUSR2 upgrade) to take effect", zap.Strings("keys", restart))
	}
	return nil
}
