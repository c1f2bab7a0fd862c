// Package metrics exports fastrtc Streams' figures to Prometheus (client_golang): sessions
// by transport and modality, session requests and refusals by reason, video frames and
// audio in and out, and histograms of handler time, voice turn latency, codec time and
// ICE timings, each labelled with the node (the Cluster's NodeID) and stream.
//
// The figures are read from Stream.Stats at scrape time: nothing is added to the media
// path beyond the stream's own atomic counters.
//
//	mux.Handle("/metrics", metrics.Handler("echo", stream))
package metrics

import (
	"strconv"

	"net/http"
	"sync"

	"github.com/fastrtc-go/fastrtc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Collector is a prometheus.Collector of streams' metrics. It is safe for concurrent use.
type Collector struct {
	mu      sync.Mutex
	streams []named
}

type named struct {
	name string
	s    *fastrtc.Stream
}

// NewCollector returns a Collector of no streams yet; Add them.
func NewCollector() *Collector { return &Collector{} }

// Add exports s under the stream label name (give each stream of a process its own).
func (c *Collector) Add(name string, s *fastrtc.Stream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.streams = append(c.streams, named{name, s})
}

// Handler serves the Prometheus text format of the streams (name, then *fastrtc.Stream, in
// pairs as Add takes them, here one) on a registry of its own with the Go runtime and
// process collectors.
func Handler(name string, s *fastrtc.Stream) http.Handler {
	c := NewCollector()
	c.Add(name, s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
}

var base = []string{"node", "stream", "modality"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fastrtc_"+name, help, append(append([]string{}, base...), labels...), nil)
}

var (
	dSessions  = desc("sessions", "Live sessions.", "transport")
	dRequests  = desc("session_requests_total", "Session requests (WebRTC offers, WebSocket and telephone starts).", "transport")
	dStarted   = desc("sessions_started_total", "Session requests that opened a session.", "transport")
	dRefusals  = desc("refusals_total", "Refused session requests, by reason.", "reason")
	dFrames    = desc("video_frames_total", "Video frames given to the handler (in) and sent (out).", "direction")
	dAudio     = desc("audio_seconds_total", "Audio given to the handler (in) and sent (out).", "direction")
	dHandler   = desc("handler_seconds", "Time of one handler call (video: a frame; audio: one Receive).", "kind")
	dTurn      = desc("turn_seconds", "Voice agents: a detected pause to the reply's first audio frame.")
	dCodec     = desc("codec_seconds", "Time of one codec call.", "codec", "op")
	dICE       = desc("ice_seconds", "WebRTC ICE: the server's gathering, and the answer to a connected peer.", "phase")
	dContexts  = desc("codec_contexts", "Open encoder, decoder and VAD contexts.")
	dQueued    = desc("queued_video_bytes", "Compressed video waiting for the sessions' decoders.")
	dSendH     = desc("video_send_sessions", "Live sessions sending video, by the height their congestion control encodes at.", "height")
	dTURNAlloc = desc("turn_allocations", "The embedded TURN server's live allocations.")
	dTURNRef   = desc("turn_refusals_total", "Requests and relays the embedded TURN server refused, by reason (peer, tcp, quota_user, quota_source, idle).", "reason")
	dSendBits  = desc("video_send_bits_per_second", "Sum over live sessions of the video encoders' targets (target) and the links' bandwidth estimates (estimate).", "kind")
)

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dSessions, dRequests, dStarted, dRefusals, dFrames, dAudio, dHandler, dTurn, dCodec, dICE, dContexts, dQueued, dSendH, dSendBits, dTURNAlloc, dTURNRef} {
		ch <- d
	}
}

// Collect reads every stream's Stats and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	streams := append([]named(nil), c.streams...)
	c.mu.Unlock()
	for _, n := range streams {
		m := n.s.Stats()
		node := m.Node
		if node == "" {
			node = "local"
		}
		l := []string{node, n.name, string(m.Modality)}
		with := func(extra ...string) []string { return append(append([]string{}, l...), extra...) }
		for t, v := range m.SessionsByTransport {
			ch <- prometheus.MustNewConstMetric(dSessions, prometheus.GaugeValue, float64(v), with(t)...)
		}
		for t, v := range m.Requests {
			ch <- prometheus.MustNewConstMetric(dRequests, prometheus.CounterValue, float64(v), with(t)...)
		}
		for t, v := range m.Started {
			ch <- prometheus.MustNewConstMetric(dStarted, prometheus.CounterValue, float64(v), with(t)...)
		}
		for r, v := range m.Refusals {
			ch <- prometheus.MustNewConstMetric(dRefusals, prometheus.CounterValue, float64(v), with(r)...)
		}
		ch <- prometheus.MustNewConstMetric(dFrames, prometheus.CounterValue, float64(m.VideoFramesIn), with("in")...)
		ch <- prometheus.MustNewConstMetric(dFrames, prometheus.CounterValue, float64(m.VideoFramesOut), with("out")...)
		ch <- prometheus.MustNewConstMetric(dAudio, prometheus.CounterValue, m.AudioIn.Seconds(), with("in")...)
		ch <- prometheus.MustNewConstMetric(dAudio, prometheus.CounterValue, m.AudioOut.Seconds(), with("out")...)
		for k, h := range m.Handler {
			ch <- hist(dHandler, h, with(k)...)
		}
		ch <- hist(dTurn, m.Turn, l...)
		for k, h := range m.Codec {
			codec, op := k, ""
			for i := range k {
				if k[i] == ' ' {
					codec, op = k[:i], k[i+1:]
					break
				}
			}
			ch <- hist(dCodec, h, with(codec, op)...)
		}
		for k, h := range m.ICE {
			ch <- hist(dICE, h, with(k)...)
		}
		ch <- prometheus.MustNewConstMetric(dContexts, prometheus.GaugeValue, float64(m.CodecContexts), l...)
		ch <- prometheus.MustNewConstMetric(dQueued, prometheus.GaugeValue, float64(m.QueuedVideoBytes), l...)
		for h, v := range m.VideoSendHeights {
			ch <- prometheus.MustNewConstMetric(dSendH, prometheus.GaugeValue, float64(v), with(strconv.Itoa(h))...)
		}
		ch <- prometheus.MustNewConstMetric(dSendBits, prometheus.GaugeValue, float64(m.VideoSendBitrate), with("target")...)
		ch <- prometheus.MustNewConstMetric(dSendBits, prometheus.GaugeValue, float64(m.VideoSendEstimate), with("estimate")...)
		if m.TURNRefusals != nil {
			ch <- prometheus.MustNewConstMetric(dTURNAlloc, prometheus.GaugeValue, float64(m.TURNAllocations), l...)
			for r, v := range m.TURNRefusals {
				ch <- prometheus.MustNewConstMetric(dTURNRef, prometheus.CounterValue, float64(v), with(r)...)
			}
		}
	}
}

func hist(d *prometheus.Desc, h fastrtc.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b.Seconds()] = h.Counts[i]
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}
