// Package report turns load runs into one report (`relayd load report`):
// the smtp-source seed's plan to "keep every session and look for
// outliers", with the charts HdrHistogram's plotter and wrk2 made standard.
//
// Inputs are record files (loadtest --record: every session) and JSON
// results (--json: histograms and interval figures). Each is one run; a
// report puts several side by side (compare.sh writes one for direct,
// relayd, HAProxy and nginx). Charts:
//
//   - the latency percentile spectrum (x: 1/(1-p) on a log scale, so 99%,
//     99.9% and 99.99% get equal room; y: latency, log), one line a run;
//   - sessions/s and errors/s over time, one line each a run;
//   - each run's latency over time by when each session was due: a point
//     per session up to MaxPoints, a heat map above, with the p99 of each
//     time bin — an open-loop run's stall shows here as a ramp of sessions
//     that waited;
//   - each recorded run's slowest sessions with all their timings, source
//     address and process.
//
// The HTML is self-contained (inline CSS and SVG drawn here, no script, no
// font, nothing fetched), so it can be mailed or attached to a CI run.
// Memory is bounded whatever the run's size: a record file is read twice
// (its time range, then its bins), keeping per-bin histograms of two
// significant digits, at most MaxPoints points and the slowest list.
//
// Charts are plain SVG with stable classes for tests and tools: svg.spectrum
// polyline.series, svg.rates polyline.rate and .errors, svg.overtime
// circle.pt (circle.pt.failed), rect.cell and polyline.p99, each polyline
// with data-run and data-points.
package report
