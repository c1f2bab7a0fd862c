package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

// The voice load: every session loops the two-utterance fixture (testdata/audio) at real time,
// as pre-encoded Opus packets (the clients spend no time encoding), against a ReplyOnPause
// server (cmd/e2eserver -kind pause: each utterance gets 0.5 s of 660 Hz). Turn latency is the
// time from the end of an utterance's last speech packet leaving the client to the first
// decoded reply frame above -30 dBFS arriving back: it includes the pause detection's wait
// (the algorithm needs a chunk of silence), the reply start and the network path.

// voiceFixture is the looped audio: Opus packets and where each utterance ends (packet index).
type voiceFixture struct {
	packets [][]byte
	ends    []int
}

func loadVoiceFixture(dir string) (*voiceFixture, error) {
	pcm, rate, ch, err := wav.ReadFile(dir + "/two_utterances48k.wav")
	if err != nil {
		return nil, err
	}
	if rate != 48000 || ch != 1 {
		return nil, fmt.Errorf("fixture: %d Hz, %d channels; want 48000 mono", rate, ch)
	}
	b, err := os.ReadFile(dir + "/two_utterances.json")
	if err != nil {
		return nil, err
	}
	var truth struct {
		Utterances []struct {
			EndSample int `json:"end_sample"`
		} `json:"utterances"`
	}
	if err := json.Unmarshal(b, &truth); err != nil {
		return nil, fmt.Errorf("fixture truth: %w", err)
	}
	enc, err := opus.NewEncoder(opus.DefaultEncoderConfig())
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	f := &voiceFixture{}
	buf := make([]byte, opus.MaxPacketBytes)
	for i := 0; (i+1)*960 <= len(pcm); i++ {
		n, err := enc.Encode(pcm[i*960:(i+1)*960], buf)
		if err != nil {
			return nil, err
		}
		f.packets = append(f.packets, append([]byte(nil), buf[:n]...))
	}
	for _, u := range truth.Utterances {
		f.ends = append(f.ends, (u.EndSample+959)/960)
	}
	return f, nil
}

// voiceSession records one session's utterance ends and reply onsets.
type voiceSession struct {
	mu        sync.Mutex
	ends      []time.Time // when each utterance's last speech packet was sent
	latencies []time.Duration
	missed    int
	measure   bool
}

// sendVoice loops the fixture at 20 ms per packet.
func (s *session) sendVoice(ctx context.Context, f *voiceFixture, v *voiceSession) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 7}}
	for i := 0; ; i++ {
		k := i % len(f.packets)
		pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = uint16(i), uint32(i*960), f.packets[k]
		_ = s.c.WriteAudioRTP(&pkt)
		for _, e := range f.ends {
			if k == e-1 {
				v.mu.Lock()
				if len(v.ends) > 0 && v.measure { // the previous utterance got no reply
					v.missed++
				}
				v.ends = append(v.ends[:0], time.Now())
				v.mu.Unlock()
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// readVoice decodes the replies and takes each one's onset.
func (s *session) readVoice(v *voiceSession) {
	defer s.wg.Done()
	var lastLoud time.Time // the server may send nothing between replies
	for {
		f, err := s.c.ReadAudio(context.Background()) // Close ends the read
		if err != nil {
			return
		}
		e := 0.0
		for _, x := range f.Samples {
			e += float64(x) * float64(x)
		}
		if len(f.Samples) == 0 || math.Sqrt(e/float64(len(f.Samples))) < 32768*math.Pow(10, -30.0/20) {
			continue
		}
		now := time.Now()
		if now.Sub(lastLoud) > 150*time.Millisecond { // a reply's first loud frame
			v.mu.Lock()
			if len(v.ends) > 0 {
				if v.measure {
					v.latencies = append(v.latencies, now.Sub(v.ends[0]))
				}
				v.ends = v.ends[:0]
			}
			v.mu.Unlock()
		}
		lastLoud = now
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

// voiceReport adds the turn-latency figures to res.
func voiceReport(res map[string]any, vs []*voiceSession) {
	var all []time.Duration
	missed := 0
	for _, v := range vs {
		v.mu.Lock()
		all = append(all, v.latencies...)
		missed += v.missed
		v.mu.Unlock()
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/100) / 10 }
	res["turns"], res["turns_unanswered"] = len(all), missed
	res["turn_latency_ms_p50"], res["turn_latency_ms_p95"] = ms(percentile(all, 0.5)), ms(percentile(all, 0.95))
	if len(all) > 0 {
		res["turn_latency_ms_min"], res["turn_latency_ms_max"] = ms(all[0]), ms(all[len(all)-1])
	}
}
