package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/wav"
	"github.com/fastrtc-go/fastrtc/media"
)

const (
	rate  = 48000
	frame = rate / 50 // 20 ms
	// The turn's start is searched from 0.6 s before to 0.4 s after the utterance's start
	// (ReplyOnPause pads 0.1 s around the first speech frame its VAD sees).
	searchBefore = 6 * rate / 10
	searchAfter  = 4 * rate / 10
	// replyRMS is the level above which a received 20 ms frame is part of a reply tone
	// (the server's tone: 0.3 of full scale, RMS ~6950).
	replyRMS = 1500
)

// clipInfo is testdata/audio/two_utterances.json.
type clipInfo struct {
	SampleRate int `json:"sample_rate"`
	Utterances []struct {
		Start int `json:"start_sample"`
		End   int `json:"end_sample"`
	} `json:"utterances"`
}

// turnResult is one detected turn compared with the clip.
type turnResult struct {
	Utterance int     `json:"utterance"` // which utterance of the clip it matched
	Round     int     `json:"round"`
	DurS      float64 `json:"durS"`
	Corr      float64 `json:"corr"`      // normalised correlation with the clean clip
	SegSNR    float64 `json:"segSnr"`    // mean segmental SNR against the clean clip, dB
	WorstSeg  float64 `json:"worstSeg"`  // its worst speech segment, dB
	NetSegSNR float64 `json:"netSegSnr"` // the same against the perfect-link decode, dB
	NetCorr   float64 `json:"netCorr"`
	Segments  int     `json:"segments"` // speech segments compared
	LowSegs   int     `json:"lowSegs"`  // speech segments <= 1 dB against the perfect-link decode
}

// result is the JSON line voiceprobe client prints.
type result struct {
	Rounds        int          `json:"rounds"`
	TurnsExpected int          `json:"turnsExpected"`
	TurnsDetected int          `json:"turnsDetected"`
	RepliesHeard  int          `json:"repliesHeard"`
	CorrMean      float64      `json:"corrMean"`
	CorrMin       float64      `json:"corrMin"`
	SegSNRMean    float64      `json:"segSnrMean"`
	SegSNRMin     float64      `json:"segSnrMin"` // the worst turn's mean
	NetSegSNRMean float64      `json:"netSegSnrMean"`
	NetSegSNRMin  float64      `json:"netSegSnrMin"`
	LowSegments   int          `json:"lowSegments"`
	Segments      int          `json:"segments"`
	PacketsSent   int          `json:"packetsSent"`
	PacketsIn     uint64       `json:"packetsIn"`   // at the server (Session.Stats)
	PacketsLost   int64        `json:"packetsLost"` // missing or late at the server (Session.Stats)
	JitterMs      float64      `json:"jitterMs"`
	Turns         []turnResult `json:"turns"`
}

func runClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	server := fs.String("server", "http://127.0.0.1:8000", "voiceprobe serve's base URL")
	rounds := fs.Int("rounds", 2, "times the clip is sent, back to back")
	clipPath := fs.String("clip", "testdata/audio/two_utterances48k.wav", "the clip (48 kHz mono WAV)")
	metaPath := fs.String("meta", "", "the clip's utterances (default: the clip's name with .json, 48k dropped)")
	loopback := fs.Bool("loopback", false, "ICE on loopback only (a run without namespaces)")
	_ = fs.Parse(args)
	if *rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	clip, info, err := loadClip(*clipPath, *metaPath)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	roundSecs := float64(len(clip)) / rate
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration((float64(*rounds)*roundSecs+40)*float64(time.Second)))
	defer cancel()
	opts := &client.Options{SendAudio: true, ReceiveAudio: true, PaceAudio: true, Logger: log}
	if *loopback {
		opts.SettingEngine = loopbackOnly
	}
	conn, err := client.New(*server, opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Connect(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}

	// Replies: bursts of loud frames, 300 ms of quiet apart.
	var heard atomic.Int64
	go func() {
		var lastLoud time.Time
		for {
			f, err := conn.ReadAudio(ctx)
			if err != nil {
				return
			}
			var e float64
			for _, v := range f.Samples {
				e += float64(v) * float64(v)
			}
			if len(f.Samples) > 0 && math.Sqrt(e/float64(len(f.Samples))) > replyRMS {
				now := time.Now()
				if now.Sub(lastLoud) > 300*time.Millisecond {
					heard.Add(1)
				}
				lastLoud = now
			}
		}
	}()

	expected := 2 * *rounds
	var sent []int16
	send := func(pcm []int16) error {
		sent = append(sent, pcm...)
		return conn.SendAudio(ctx, media.AudioFrame{SampleRate: rate, Channels: 1, Samples: pcm})
	}
	for range *rounds {
		for i := 0; i < len(clip); i += frame {
			if err := send(clip[i : i+frame]); err != nil {
				return err
			}
		}
	}
	// Silence until every reply was heard (at most 3 s), then 0.3 s more.
	silence := make([]int16, frame)
	for i := 0; i < 150 && int(heard.Load()) < expected; i++ {
		if err := send(silence); err != nil {
			return err
		}
	}
	for range 15 {
		if err := send(silence); err != nil {
			return err
		}
	}

	turns, err := fetchTurns(ctx, *server, conn.ID())
	if err != nil {
		return err
	}
	perfect, err := perfectLink(sent)
	if err != nil {
		return err
	}
	res := compare(floats(clip), info, len(clip), floats(perfect), turns)
	res.Rounds, res.TurnsExpected, res.RepliesHeard = *rounds, expected, int(heard.Load())
	res.PacketsSent = len(sent) / frame
	return json.NewEncoder(os.Stdout).Encode(res)
}

// loadClip reads the clip, padded with silence to whole 20 ms frames, and its utterances.
func loadClip(clipPath, metaPath string) ([]int16, clipInfo, error) {
	var info clipInfo
	pcm, r, ch, err := wav.ReadFile(clipPath)
	if err != nil {
		return nil, info, err
	}
	if r != rate || ch != 1 {
		return nil, info, fmt.Errorf("%s: %d Hz, %d channels; want 48000 Hz mono", clipPath, r, ch)
	}
	if metaPath == "" {
		metaPath = clipPath[:len(clipPath)-len(".wav")]
		if len(metaPath) > 3 && metaPath[len(metaPath)-3:] == "48k" {
			metaPath = metaPath[:len(metaPath)-3]
		}
		metaPath += ".json"
	}
	b, err := os.ReadFile(metaPath)
	if err != nil {
		return nil, info, err
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, info, fmt.Errorf("%s: %w", metaPath, err)
	}
	if info.SampleRate != rate || len(info.Utterances) == 0 {
		return nil, info, fmt.Errorf("%s: %d Hz, %d utterances", metaPath, info.SampleRate, len(info.Utterances))
	}
	for len(pcm)%frame != 0 {
		pcm = append(pcm, 0)
	}
	return pcm, info, nil
}

// fetchTurns reads the session's turns and figures from the server.
func fetchTurns(ctx context.Context, server, id string) (turnsReply, error) {
	var out turnsReply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/probe/turns?id="+url.QueryEscape(id), nil)
	if err != nil {
		return out, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return out, nil // no turn was detected
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return out, fmt.Errorf("GET /probe/turns: %s: %s", resp.Status, b)
	}
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// perfectLink returns what the server's decoder makes of sent on a link that loses and
// reorders nothing: the same Opus encoder settings as client.SendAudio, each packet decoded
// in order.
func perfectLink(sent []int16) ([]int16, error) {
	enc, err := opus.NewEncoder(opus.EncoderConfig{SampleRate: rate, Channels: 1, BitrateBps: 32000,
		Complexity: 5, FEC: true, PacketLossPercent: 10, Application: opus.ApplicationVoIP})
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	dec, err := opus.NewDecoder(rate, 1)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	pkt := make([]byte, opus.MaxPacketBytes)
	pcm := make([]int16, 5760)
	out := make([]int16, 0, len(sent))
	for i := 0; i+frame <= len(sent); i += frame {
		n, err := enc.Encode(sent[i:i+frame], pkt)
		if err != nil {
			return nil, err
		}
		k, err := dec.Decode(pkt[:n], pcm)
		if err != nil {
			return nil, err
		}
		out = append(out, pcm[:k]...)
	}
	return out, nil
}

// compare finds each turn in the clip and measures it (see the package comment). roundLen
// is the clip's length as sent (whole frames); perfect is the whole sent stream decoded.
func compare(clip []float64, info clipInfo, roundLen int, perfect []float64, tr turnsReply) result {
	res := result{TurnsDetected: len(tr.Turns), PacketsIn: tr.PacketsIn, PacketsLost: tr.PacketsLost, JitterMs: tr.JitterMs,
		Turns: []turnResult{}}
	round, prevUtt := 0, -1
	for _, t := range tr.Turns {
		deg := floats(decodePCM(t.PCM))
		if t.Rate != rate || len(deg) < frame {
			res.Turns = append(res.Turns, turnResult{Utterance: -1, Round: -1, DurS: float64(len(deg)) / float64(max(t.Rate, 1))})
			continue
		}
		best := turnResult{Utterance: -1, Corr: math.Inf(-1)}
		bestLag := 0
		for u, ut := range info.Utterances {
			if lag, c := align(clip, deg, ut.Start-searchBefore, ut.Start+searchAfter); c > best.Corr {
				best.Utterance, best.Corr, bestLag = u, c, lag
			}
		}
		// Turns come in order: an utterance not after the previous one starts a new round.
		if prevUtt >= 0 && best.Utterance <= prevUtt {
			round++
		}
		prevUtt = best.Utterance
		best.Round, best.DurS = round, float64(len(deg))/rate
		ref := window(clip, bestLag, len(deg))
		speech := speechSegments(ref, frame)
		st := segmentalSNR(ref, deg, frame, speech)
		best.SegSNR, best.WorstSeg, best.Segments = st.Mean, st.Min, st.Segments
		// Against the perfect-link decode: the same place, give or take the codec's delay.
		base := round*roundLen + bestLag
		lag2, c2 := align(perfect, deg, base-frame, base+frame)
		nst := segmentalSNR(window(perfect, lag2, len(deg)), deg, frame, speech)
		best.NetSegSNR, best.NetCorr, best.LowSegs = nst.Mean, c2, nst.Low
		res.Turns = append(res.Turns, best)
	}
	first := true
	var corr, snr, net float64
	valid := 0
	for _, t := range res.Turns {
		if t.Utterance < 0 {
			continue
		}
		valid++
		if first {
			res.CorrMin, res.SegSNRMin, res.NetSegSNRMin = t.Corr, t.SegSNR, t.NetSegSNR
			first = false
		}
		res.CorrMin, res.SegSNRMin, res.NetSegSNRMin = min(res.CorrMin, t.Corr), min(res.SegSNRMin, t.SegSNR), min(res.NetSegSNRMin, t.NetSegSNR)
		corr += t.Corr
		snr += t.SegSNR * float64(t.Segments)
		net += t.NetSegSNR * float64(t.Segments)
		res.Segments += t.Segments
		res.LowSegments += t.LowSegs
	}
	if valid > 0 {
		res.CorrMean = corr / float64(valid)
	}
	if res.Segments > 0 {
		res.SegSNRMean, res.NetSegSNRMean = snr/float64(res.Segments), net/float64(res.Segments)
	}
	return res
}

// decodePCM undoes the server's base64 of 16-bit little-endian PCM.
func decodePCM(s string) []int16 {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil
	}
	out := make([]int16, len(b)/2)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return out
}
