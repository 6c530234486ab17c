// Package logging is relayd's logger: go.uber.org/zap for ordinary lines,
// a per-session access log, and one bounded ring buffer between every
// goroutine that logs and the output, so that a relay loop never waits on
// log I/O. A slow disk, a full pipe or a stalled journald costs dropped
// (and counted) log lines, never relay throughput.
//
// # Use
//
//	lg, err := logging.New(logging.Config{Level: "info", Access: true})
//	...
//	lg.Z().Info("listening", zap.String("addr", addr))   // ordinary lines
//	lg.Access(&logging.AccessEntry{...})                 // at session end
//	...
//	lg.Close(ctx)                                        // on shutdown, after the loops stop
//
// Config keys (read by the config package): log.level, log.format,
// log.output, log.ring_size, log.entry_bytes, log.access, log.caller,
// log.flush_timeout, log.max_size_mb, log.max_backups, log.max_age_days,
// log.drop_report, log.sample_initial, log.sample_thereafter. Zero values
// mean "the sensible default"; see Config.
//
// # How an entry travels
//
// Producers (relay loops, connector workers, anything holding Z()) claim a
// slot of a pre-allocated ring with one CAS (a Vyukov bounded queue) and
// fill it:
//   - Access copies the AccessEntry by value into the slot; encoding
//     happens later on the writer goroutine. The enqueue step allocates
//     nothing (asserted by a test) and never waits.
//   - Z() lines are encoded by zap on the caller's goroutine, as zap always
//     does, and the bytes are copied into the slot's own buffer
//     (Config.EntryBytes, 256 by default, pre-allocated in one array). A
//     longer line makes that slot's buffer grow with one allocation; the
//     grown buffer is reused for later lines up to 1 KiB (beyond that it is
//     released after writing). Lines are never truncated. zap's caller
//     annotation is off by default (Config.Caller) because it walks the
//     stack and allocates on every line.
//
// When the ring is full the entry is dropped and an atomic counter grows
// (Dropped, for metrics). One writer goroutine drains the ring in batches
// of up to 64 KiB, encodes the access entries and issues one Write per
// batch. Slots are handed back before that Write, so producers keep going
// while the writer waits on the output. Console access lines go through
// zap's console encoder; JSON access lines through a hand-written encoder
// that produces exactly what zap's JSON encoder would (same keys, same
// escaping; a fuzz test holds them equal) for about a quarter of the CPU,
// because the writer shares the cores with the relay loops. Every string
// is escaped; payload is never logged.
//
// A producer wakes the writer only when it is asleep on an empty ring, and
// the woken writer lingers 1 ms before draining, so a steady trickle costs
// at most one wake-up per millisecond rather than one per entry. Every
// DropReport period (10s) the writer emits "dropped N log entries in the
// last 10s" if anything was dropped; the same line is emitted at Close if
// needed.
//
// Cost, measured 2026-11-23 on the 2-vCPU dev box (go test -bench . in this
// package; see bench_test.go): Access enqueue ~10-13 ns and 0 allocs
// (~22 ns with the writer draining to a file on the other core); ring end
// to end including encoding and the file write ~0.75 µs per access entry,
// against ~1.55 µs for zap through BufferedWriteSyncer and ~3.3 µs for zap
// writing each entry to the file. With an output that stalls 2 ms per
// write, Access stays ~0.1 µs (dropping), zap-to-file takes 2.3 ms per
// entry, and BufferedWriteSyncer makes about 1 call in 1000 wait >1 ms.
//
// With the defaults the ring holds about 4 MiB (8192 slots of ~230 bytes
// for an access entry plus 256 bytes of line buffer).
//
// Repeated ordinary lines are sampled by zap's sampler (per second and per
// level+message: the first 100 pass, then every 100th) so an error flood
// cannot crowd access lines out of the ring; Sampled counts the
// suppressed ones. zap's ErrorOutput (where zap reports its own encoding
// errors) also goes through the ring, because zap's default is a locked,
// synchronous stderr.
//
// # Why not zapcore.BufferedWriteSyncer
//
// BufferedWriteSyncer (zap v1.28.0, zapcore/buffered_write_syncer.go)
// batches writes, but every Write runs under one sync.Mutex, and when the
// incoming line does not fit in the remaining buffer, Write flushes the
// bufio.Writer to the underlying output while still holding that mutex.
// Its periodic flushLoop also calls Sync (flush + the output's Sync, i.e.
// fsync for a file) under the same mutex. So as soon as the output is slow
// (a disk stall, a pipe whose reader is gone, a blocked journald), the
// goroutine that happens to fill the buffer blocks inside the write, and
// every other logging goroutine queues on the mutex behind it: a relay
// loop calling Info would stop relaying for as long as the disk stalls.
// It has no way to drop: its only outcomes are "buffered" or "wait".
// The ring here replaces the mutex with a CAS and the wait with a counted
// drop; only the writer goroutine ever touches the output.
//
// # Shutdown
//
// Close stops accepting entries (later ones count as dropped), writes
// what is queued, syncs the output and closes it if New opened it. It is
// bounded by its ctx and Config.FlushTimeout (2s): with a healthy output
// nothing accepted before Close is lost; with a stuck output Close returns
// an error wrapping ErrFlushTimeout that says how many entries were left,
// and the writer goroutine exits whenever the stuck Write returns (a Write
// cannot be cancelled). Flush (and Z().Sync()) waits for what is queued
// without closing; they block, so relay loops must not call them. Lines
// at DPanic level and above trigger a bounded flush, as zap's own core
// syncs before a crash.
//
// # Reload
//
// On SIGHUP, change the running Logger with SetLevel and SetAccess rather
// than building a new one: lumberjack v2.2.1 starts one goroutine per
// file Logger that its Close never stops (natefinch/lumberjack#56, #205),
// so every rebuilt file logger would leak one idle goroutine. Changing
// log.output or log.format needs a restart (or accepts that leak).
//
// # Concurrency
//
// All Logger methods are safe for concurrent use. Access, AccessEnabled,
// Dropped and the zap logging calls never block. Flush, Sync and Close
// block up to their deadline. The writer goroutine is owned by the Logger
// and exits in Close; NewWithWriter's WriteSyncer is used only by that
// goroutine and is synced, not closed.
//
// # Non-goals
//
// No delivery guarantee under overload (that is the point); no per-level
// routing to different outputs; no rotation logic of its own (lumberjack
// rotates file outputs by size); no logging of relayed payload; no
// ordering between different producers beyond the order in which they won
// their ring slots (within one producer, order is kept).
package logging
