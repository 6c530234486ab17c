// Package master runs relayd as a master process and N worker processes
// (config key processes), the Postfix-style model the design grew from: the
// master owns the sockets, so from outside nothing changes, and the workers
// do the work on every core.
//
// The master binds every listener as N SO_REUSEPORT sockets, one per
// worker, with a steering program that sends each client source address to
// one worker (package steer), and holds all of them for its whole life. It
// relays nothing. Each worker is this same binary re-executed ("relayd
// worker") with one inherited file descriptor, fd 3: a SOCK_SEQPACKET
// control socket. Everything else travels over it (Conn): the hello with
// the whole effective config as JSON (the worker applies exactly what the
// master validated, never re-reading the file), its listening sockets and
// the shared session table (package shm) as SCM_RIGHTS, then reloads with
// the sockets of new listeners, and drain. The worker answers ready,
// reloaded, or failed.
//
// The Supervisor keeps the workers running: one that exits is started
// again after a back-off (50ms, doubling while it keeps failing, at most
// 10s) with the same slot — the same sockets, so clients that connect
// meanwhile wait in the kernel's accept queue and are served by the
// replacement, never refused. A worker binary or config that cannot start
// at all (GiveUp failed starts, none ever ready) makes the supervisor
// report itself dead instead of looping. A worker whose control socket
// closes (the master died) drains and exits by itself.
//
// Why processes and not more loops in one: the open-file limit is per
// process (20,000 here: ~9,900 sessions), and one crash or one heap under
// GC pressure then takes only 1/N of the sessions with it.
package master
