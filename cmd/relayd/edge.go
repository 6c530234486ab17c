package main

import (
	"github.com/relayd/relayd/configs"
	"github.com/relayd/relayd/relay"
)

// applyEdge maps a listener's edge settings (mode, PROXY protocol, ACLs,
// per-source limits, destination policy) onto its relay config.
func applyEdge(lc *relay.ListenerConfig, l configs.Listener) error {
	return nil
}
