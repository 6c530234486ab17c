// Package configs loads, validates and documents relayd's configuration.
//
// relayd.yaml in this directory is the reference: every key, commented, with
// the built-in default as its value (tests keep it equal to Default and make
// sure every key is there and commented), plus one example listener. It is
// embedded as ReferenceYAML.
//
// # Use
//
//	cfg, err := configs.Load(configs.LoadOptions{
//		File:      path,           // "" = no file
//		Env:       true,           // RELAYD_RELAY_LOOPS=4, ...
//		Listen:    listenFlag,     // --listen
//		Upstreams: upstreamFlags,  // --upstream a,b --upstream c
//	})
//	if errors.Is(err, configs.ErrInvalid) { /* print err, exit 2 */ }
//	out, _ := cfg.YAML() // the effective config, for `relayd config check`
//
// Sources, lowest precedence first: Default, the YAML file (read by viper),
// RELAYD_* environment variables, the quick flags. Values are decoded with
// mapstructure, strictly: no string-to-number guessing, durations need a
// unit ("5s"; a bare 300 would otherwise mean 300ns), relay.buffer_size
// also takes "32KiB"/"64k".
//
// # Errors
//
// Load and Validate report every problem at once, joined with errors.Join.
// Each is a *FieldError naming the full key path, the value and why:
//
//	relay.bufer_size: unknown key
//	relay.buffer_size: -1: must be between 1024 and 16777216
//	listeners[0].upstreams: []: at least one upstream is required
//
// A file that is not YAML gives one *SyntaxError with file and line. Both
// match errors.Is(err, ErrInvalid); an unreadable file does not.
//
// # Non-goals
//
// No hot reload here (the daemon re-runs Load on SIGHUP and decides what it
// can apply), no name resolution (listen and upstream hosts are IP literals
// so that validation needs no network and a config means the same thing on
// every start), no lists from the environment (listeners come from the file
// or the quick flags).
//
// # Edge keys
//
// A listener's mode socks5 or http-connect lets clients name targets: its
// upstreams must then be empty, and its policy (allow/deny "CIDR [PORTS]")
// decides where they may go. proxy_protocol, acl and limits (per source)
// apply to every mode; auth and policy only to socks5 / http-connect, and
// setting them on a forward listener is an error rather than silently
// unused. resolver (global) serves the names of all listeners. Validation
// reads auth.file, so a missing credentials file fails config check.
//
// # Concurrency
//
// Load, LoadBytes and Default are safe to call from several goroutines (each
// call uses its own viper instance). A *Config is plain data: share it
// read-only once loaded.
package configs
