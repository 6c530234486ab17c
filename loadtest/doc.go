// Package loadtest is relayd's measuring instrument: a TCP sink and a paced
// load generator in the tradition of Postfix's smtp-sink and smtp-source,
// exposed as `relayd sink` and `relayd load` (SinkCommand, LoadCommand).
//
// # Sink
//
// StartSink runs a gnet engine (multicore, one SO_REUSEPORT listener per
// event loop) in mode echo, discard, banner (greeting first, then echo) or
// source (an endless verifiable byte pattern). Its counters (Stats) are exact
// and are what tests compare the generator's numbers against.
//
// # Load
//
// Run drives one of four modes against Target:
//
//   - rr: Concurrency workers each loop connect, write Size bytes (a
//     per-session sequence), read them back, compare, close; until Sessions
//     attempts or Duration.
//   - bulk: Streams connections stream the pattern (byte at offset o is
//     o%251) up, down or both ways for Duration; every byte read is
//     verified.
//   - idle: open Sessions, prove each with one Size-byte echo, keep only the
//     raw descriptor, hold them for Duration; report this process's RSS and
//     that of PID (the relay under test) before and after.
//   - storm: open and close Sessions as fast as pacing allows; connect-time
//     percentiles and connects/s.
//
// # Open and closed loop
//
// By default the session modes are closed loop: Concurrency sessions at
// once, a new one when one ends, so a slow target slows the generator and
// its stall hides in a lower rate (coordinated omission). With Rate
// (`--rate R`, rr and storm) the run is open loop, wrk2's model: a session
// is due every 1/R s on a fixed schedule, each starts in its own goroutine
// whatever the others do, and its latency counts from when it was due;
// Concurrency then caps the sessions outstanding (DefaultOpenLoopOutstanding)
// and a session the cap holds back carries the wait in its latency. A run
// that could not keep its schedule says so (Result.RateShortfall: the cap
// was full, or the process is CPU-bound) and fails its thresholds. With
// Requests > 1 (keep-alive) Rate is round trips a second over Concurrency
// persistent connections, each connection's due on its own interleaved
// schedule (wrk2 exactly), latency per round trip from when it was due.
//
// # Records, intervals, histogram logs
//
// RecordPath (`--record`) streams every session to a compact file (format
// in record.go: ~20–25 bytes a session, ≤ 40 whatever the session, a
// fixed 256 KiB buffer) read by ReadRecords and by package report. Every
// Interval (1 s) the run cuts an Interval: sessions and errors that ended
// in it, bytes, latency p50/p99/max and the latency histogram itself;
// they are the progress lines off a terminal, the IntervalsJSON lines,
// Result.Intervals, and (WriteHistLog, `--hist-log`) an HdrHistogram
// interval log.
//
// Every connect goes through one paced connector: at most
// MaxInflightConnects outstanding at once (1 is smtp-source's rule, which
// avoids SYN back-off distorting the benchmark), at most ConnectRate starts
// per second, ConnectTimeout each, and local addresses from SourceIPs
// round-robin (IP_BIND_ADDRESS_NO_PORT so each source address gets its own
// ephemeral port range). Session buffers come from a sync.Pool and are held
// only while a session is active (the seed's lesson: a goroutine-per-session
// rewrite of smtp-source used several times the memory until its buffers
// were pooled).
//
// Session failures are counted by kind (Classify): refused (ECONNREFUSED),
// timeout (ETIMEDOUT, dial or I/O timeout), reset (ECONNRESET, EPIPE),
// addrnotavail (EADDRNOTAVAIL: out of source ports), mismatch (bytes back
// differ), short (EOF before all bytes), other.
//
// # JSON (Result.JSON, `relayd load --json`)
//
// One object; these names are stable:
//
//	mode, target                     string
//	sessions                         completed sessions (bulk: streams)
//	attempts                         sessions started
//	errors                           {"refused","timeout","reset","addrnotavail","mismatch","short","other"}: counts, all present
//	errors_total                     sum of errors
//	elapsed_s                        wall time (bulk: streaming time)
//	sessions_per_sec                 sessions / elapsed_s
//	requests, requests_per_sec       rr round trips completed (Sessions × --requests when none failed) and their rate
//	bytes_sent, bytes_received       payload bytes, client side
//	bytes_per_sec, bits_per_sec      (sent+received) / elapsed_s
//	latency, wait, connect, ttfb, rtt {"count","p50_us","p90_us","p99_us","p999_us","max_us"} (microseconds)
//	start_unix_ns                    when the run started
//	rate, started_per_sec            open loop: the rate asked for and the rate sessions started at
//	rate_shortfall                   open loop: why the rate was not kept ("" or absent: it was)
//	intervals                        [{"t_s","length_s","sessions","errors_total","errors","bytes","sessions_per_sec","bits_per_sec","p50_us","p99_us","max_us","hist"}]
//	max_inflight_connects_seen       most connects ever outstanding at once
//	streams                          bulk: [{"bytes_sent","bytes_received","bits_per_sec","error"}]
//	idle_open_s                      idle: time to open and prove all sessions
//	self_rss_before_bytes, self_rss_after_bytes, self_rss_per_session_bytes
//	target_pid (first), target_pids (all, RSS summed), target_rss_before_bytes, target_rss_after_bytes, target_rss_per_session_bytes
//	procs                            how many processes made the run (--procs); absent for one
//	histograms                       {"latency","wait","connect","ttfb","rtt"}: the distributions themselves, HdrHistogram V2 compressed (base64), nanoseconds
//
// latency is each session's time from when it was due (open loop) or
// began (closed loop) to its end, wait how late it began; connect is the connect() time alone (queueing for the pacing caps
// excluded); ttfb is from the request write (or, with ExpectBanner, from
// connect) to the first byte back; rtt is from the request write to the last
// byte back (with --requests N, of each round trip on the connection).
//
// # Several processes
//
// One process has one open-file limit (20,000 here: 20,000 client sockets at
// most). RunProcs (`relayd load --procs N`) runs N copies of this binary,
// each with its share of the sessions, streams, concurrency, pacing and a
// disjoint slice of SourceIPs (LoadConfig.Split), and merges their JSON
// results exactly (Merge): counts and bytes summed, histograms added —
// never percentiles averaged — so the merged percentiles are those of one
// histogram over every sample (TestMergeIsExact). In idle mode the target's
// RSS is read once every child holds all its sessions. RunSinkProcs
// (`relayd sink --procs N`) runs N sinks on one SO_REUSEPORT address and
// sums their counters.
//
// # Non-goals
//
// No TLS, no protocol beyond byte echo and greetings. Across machines the
// tool merges runs (Merge, `relayd load merge`, deploy/k8s) but does not
// start or synchronise them itself. The sink does not apply backpressure
// beyond gnet's (its buffers are unbounded); it is a test peer, not a relay.
//
// # Concurrency
//
// Run may be called from several goroutines; each call owns its workers and
// waits for all of them before returning. A Sink's methods are safe for
// concurrent use; Close waits for the engine's goroutines. The test hooks
// (testHookConnecting, testHookIdleHeld) are package variables read without
// locks, so tests set them before Run and clear them after.
//
// # Comparison
//
// compare.sh in this directory installs HAProxy and nginx when missing and
// runs the same rr, bulk and idle workloads through each, through relayd and
// directly against the sink, then prints one table.
package loadtest
