package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// encodeHists encodes each histogram (V2 compressed, base64); one that
// fails to encode is left out.
func encodeHists(hs map[string]*hdrhistogram.Histogram) map[string]string {
	out := make(map[string]string, len(hs))
	for name, h := range hs {
		if b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
			out[name] = string(b)
		}
	}
	return out
}

// ParseResult reads a Result from its JSON (Result.JSON), histograms
// included; the percentiles are recomputed from them.
func ParseResult(b []byte) (*Result, error) {
	var aux struct {
		Result
		ElapsedSec  float64 `json:"elapsed_s"`
		IdleOpenSec float64 `json:"idle_open_s"`
	}
	// The percentile objects are written in microseconds and are derived
	// data: decode everything else, then rebuild them from the histograms.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("loadtest: result: %w", err)
	}
	for _, k := range histNames {
		delete(raw, k)
	}
	clean, _ := json.Marshal(raw)
	if err := json.Unmarshal(clean, &aux); err != nil {
		return nil, fmt.Errorf("loadtest: result: %w", err)
	}
	r := aux.Result
	r.Elapsed = time.Duration(aux.ElapsedSec * float64(time.Second))
	r.IdleOpenTime = time.Duration(aux.IdleOpenSec * float64(time.Second))
	hs, err := decodeHists(r.Histograms)
	if err != nil {
		return nil, err
	}
	r.setHists(hs)
	return &r, nil
}

func decodeHists(enc map[string]string) (map[string]*hdrhistogram.Histogram, error) {
	out := map[string]*hdrhistogram.Histogram{}
	for _, name := range histNames {
		s, ok := enc[name]
		if !ok && (name == "latency" || name == "wait") {
			out[name] = newHist() // a result of the relayd before them
			continue
		}
		if !ok {
			return nil, fmt.Errorf("loadtest: result has no %s histogram (from an older relayd load?)", name)
		}
		h, err := hdrhistogram.Decode([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("loadtest: %s histogram: %w", name, err)
		}
		out[name] = h
	}
	return out, nil
}

// Merge combines runs made at the same time (the processes of one RunProcs,
// or load generators on several machines) into one result, exactly: counts
// and bytes summed, histograms added (so the merged percentiles are those
// of one histogram over every sample), elapsed the longest, rates over it.
// RSS: this side's (Self*) summed; the target's is the caller's to measure.
func Merge(parts []*Result) (*Result, error) {
	if len(parts) == 0 {
		return nil, errors.New("loadtest: nothing to merge")
	}
	m := &Result{Mode: parts[0].Mode, Target: parts[0].Target, Errors: map[string]uint64{}, StartUnixNano: parts[0].StartUnixNano}
	for _, p := range parts {
		if p.StartUnixNano > 0 && (m.StartUnixNano == 0 || p.StartUnixNano < m.StartUnixNano) {
			m.StartUnixNano = p.StartUnixNano
		}
	}
	var hs map[string]*hdrhistogram.Histogram
	for _, p := range parts {
		if p.Mode != m.Mode {
			return nil, fmt.Errorf("%w: merging a %s run with a %s run", ErrBadConfig, p.Mode, m.Mode)
		}
		if (p.Rate > 0) != (parts[0].Rate > 0) {
			return nil, fmt.Errorf("%w: merging an open-loop run (--rate) with a closed-loop one", ErrBadConfig)
		}
		ph, err := decodeHists(p.Histograms)
		if err != nil {
			return nil, err
		}
		if hs == nil {
			hs = ph
		} else {
			for name, h := range ph {
				if dropped := hs[name].Merge(h); dropped > 0 {
					return nil, fmt.Errorf("loadtest: %s histogram: %d values out of range", name, dropped)
				}
			}
		}
		m.Sessions += p.Sessions
		m.Attempts += p.Attempts
		m.Requests += p.Requests
		m.BytesSent += p.BytesSent
		m.BytesReceived += p.BytesReceived
		for k, v := range p.Errors {
			m.Errors[k] += v
			m.ErrorsTotal += v
		}
		m.MaxInflightConnectsSeen += p.MaxInflightConnectsSeen
		m.Streams = append(m.Streams, p.Streams...)
		m.Elapsed = max(m.Elapsed, p.Elapsed)
		m.IdleOpenTime = max(m.IdleOpenTime, p.IdleOpenTime)
		m.SelfRSSBefore += p.SelfRSSBefore
		m.SelfRSSAfter += p.SelfRSSAfter
		m.Procs += max(p.Procs, 1)
		m.Rate += p.Rate
		m.StartedPerSec += p.StartedPerSec
		if p.RateShortfall != "" {
			m.RateShortfall = strings.TrimPrefix(m.RateShortfall+"; "+p.RateShortfall, "; ")
		}
	}
	m.setHists(hs)
	m.rates()
	iv, err := mergeIntervals(m.StartUnixNano, parts)
	if err != nil {
		return nil, err
	}
	m.Intervals = iv
	if m.Mode == ModeIdle && m.Sessions > 0 {
		m.SelfRSSPerSession = (float64(m.SelfRSSAfter) - float64(m.SelfRSSBefore)) / float64(m.Sessions)
	}
	return m, nil
}
