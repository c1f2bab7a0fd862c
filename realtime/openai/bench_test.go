package openai_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/realtime/openai"
)

// BenchmarkBridgeLatency measures, over the WebSocket audio route on loopback, the latency the
// bridge adds: from the model's first audio delta of a response to the first reply packet the
// client receives ("first-audio"), and from the model's speech_started event over a playing
// reply to the last reply packet the client receives ("interrupt"; 0 when none came after it),
// and from that event to the model's receipt of response.cancel ("cancel").
// Each iteration is one turn.
//
//	go test -run '^$' -bench BridgeLatency -benchtime 50x ./realtime/openai
func BenchmarkBridgeLatency(b *testing.B) {
	model := newModelServer(b)
	agent, err := openai.New(openai.Options{APIKey: "sk-test", BaseURL: model.url()})
	if err != nil {
		b.Fatal(err)
	}
	stream, err := fastrtc.New(agent, fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	srv := httptest.NewServer(stream.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := client.DialWebSocket(ctx, srv.URL, &client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 24000, Channels: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	m := model.accept(ctx)
	m.next(ctx, "session.update")
	var first, stop, cancels []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, item := fmt.Sprintf("resp_%d", i), fmt.Sprintf("item_%d", i)
		m.send(map[string]any{"type": "response.created", "response": map[string]any{"id": resp}})
		sent := time.Now()
		m.audioDeltas(resp, item, 600, 2*time.Second)
		got := time.Duration(0)
		for got < 500*time.Millisecond {
			f, err := c.ReadAudio(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
				if got == 0 {
					first = append(first, time.Since(sent))
				}
				got += time.Duration(len(f.Samples)) * time.Second / time.Duration(f.SampleRate)
			}
		}
		barge := time.Now()
		m.send(map[string]any{"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"})
		ce := m.next(ctx, "response.cancel")
		m.next(ctx, "conversation.item.truncate")
		cancels = append(cancels, ce.At.Sub(barge))
		var last time.Time
		for {
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			f, err := c.ReadAudio(rctx)
			rcancel()
			if err != nil {
				break
			}
			if toneShare(f.Samples, 600, f.SampleRate) > 0.5 {
				last = time.Now()
			}
		}
		d := time.Duration(0)
		if !last.IsZero() {
			d = last.Sub(barge)
		}
		stop = append(stop, d)
		m.send(map[string]any{"type": "response.done", "response": map[string]any{"id": resp, "status": "cancelled"}})
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		slices.Sort(ds)
		p := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
		b.ReportMetric(p(0.5), name+"-p50-ms")
		b.ReportMetric(p(0.95), name+"-p95-ms")
	}
	report("first-audio", first)
	report("interrupt", stop)
	report("cancel", cancels)
	b.ReportMetric(0, "ns/op")
}
