package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/media"
)

// serve runs a stream of this library on loopback for the test.
func serve(t *testing.T, h fastrtc.Handler, modality fastrtc.Modality, mode fastrtc.Mode, opts ...fastrtc.Option) string {
	t.Helper()
	opts = append([]fastrtc.Option{fastrtc.WithSettingEngine(loopback)}, opts...)
	s, err := fastrtc.New(h, modality, mode, opts...)
	if err != nil {
		t.Fatalf("fastrtc.New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Stream.Close: %v", err)
		}
	})
	return srv.URL
}

// sendVideo sends pattern frames at 30 fps, frame i with RTP timestamp i*3000, until ctx
// is done or n frames were sent.
func sendVideo(ctx context.Context, c *client.Conn, n int) {
	go func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for i := 0; i < n; i++ {
			if c.SendVideo(ctx, pattern(i), uint32(i*3000)) != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// readVideoGood reads frames until n of them match want(frame) with more than 30 dB.
func readVideoGood(t *testing.T, ctx context.Context, c *client.Conn, n int, want func(ts uint32) *image.YCbCr) {
	t.Helper()
	good, total := 0, 0
	for good < n {
		f, err := c.ReadVideo(ctx)
		if err != nil {
			t.Fatalf("ReadVideo: %d good of %d frames: %v", good, total, err)
		}
		total++
		if w, h := f.Size(); w != testW || h != testH {
			t.Fatalf("frame %dx%d", w, h)
		}
		if p := psnr(f.Image, want(f.RTPTimestamp)); p > 30 {
			good++
		} else if total > 15 {
			t.Fatalf("frame %d (ts %d): %.1f dB against the expected picture", f.Index, f.RTPTimestamp, p)
		}
	}
}

// readTone reads d of audio (mono view) and checks it holds freq.
func readTone(t *testing.T, ctx context.Context, read func(context.Context) (media.AudioFrame, error), freq float64, d time.Duration) {
	t.Helper()
	var pcm []int16
	rate := 0
	for rate == 0 || len(pcm) < int(d.Seconds()*float64(rate)) {
		a, err := read(ctx)
		if err != nil {
			t.Fatalf("ReadAudio after %d samples: %v", len(pcm), err)
		}
		rate = a.SampleRate
		pcm = append(pcm, mono(a.Samples, a.Channels)...)
	}
	// Look at the loudest second: the echo starts after some silence.
	best, bestRMS := 0.0, 0.0
	for start := 0; start+rate/2 <= len(pcm); start += rate / 10 {
		r, rms := toneRatio(pcm[start:start+rate/2], rate, freq)
		if rms > bestRMS {
			best, bestRMS = r, rms
		}
	}
	if best < 0.8 || bestRMS < 0.15 {
		t.Fatalf("received audio: %.2f of its power at %.0f Hz, RMS %.3f", best, freq, bestRMS)
	}
}

func flipHandler(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
	return f.FlipVertical(), nil
}

func TestFastRTCVideoSendReceive(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	base := serve(t, fastrtc.VideoFunc(flipHandler), fastrtc.Video, fastrtc.SendReceive)
	c := dial(t, ctx, base, client.Options{SendVideo: true, ReceiveVideo: true})
	sendVideo(ctx, c, 300)
	readVideoGood(t, ctx, c, 20, func(ts uint32) *image.YCbCr { return flipped(pattern(int(ts / 3000))) })
}

func TestFastRTCVideoReceive(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	src := fastrtc.VideoSource(func(s *fastrtc.Session) iter.Seq2[image.Image, error] {
		return func(yield func(image.Image, error) bool) {
			for i := 0; i < 300; i++ {
				if !yield(pattern(i), nil) {
					return
				}
			}
		}
	})
	base := serve(t, src, fastrtc.Video, fastrtc.Receive)
	c := dial(t, ctx, base, client.Options{ReceiveVideo: true})
	readVideoGood(t, ctx, c, 20, func(ts uint32) *image.YCbCr { return pattern(int(ts / 3000)) })
}

// TestFastRTCVideoSendInputsOutputs: send mode; the handler reads its input and emits it as
// an additional output, which the client reads from /outputs. A bad input value is an
// HTTPError with the server's message.
func TestFastRTCVideoSendInputsOutputs(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	h := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		if lv := s.Inputs().Float("level"); lv > 0 && f.Index%5 == 0 {
			_ = s.Emit(map[string]any{"level": lv, "mean": int(f.Image.Y[0])})
		}
		return nil, nil
	}
	base := serve(t, fastrtc.VideoFunc(h), fastrtc.Video, fastrtc.Send,
		fastrtc.WithInputs(fastrtc.Slider("level", 0, 1, 0.1, 0)))
	c := dial(t, ctx, base, client.Options{SendVideo: true})
	for {
		m, err := c.Message(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "send_input" {
			break
		}
	}
	err := c.SetInput(ctx, map[string]any{"level": 7})
	var he *client.HTTPError
	if !errors.As(err, &he) || he.StatusCode/100 != 4 || !strings.Contains(he.Message, "level") || !strings.Contains(err.Error(), "level") {
		t.Fatalf("out-of-range input: %v", err)
	}
	if err := c.SetInput(ctx, map[string]any{"level": 0.5}); err != nil {
		t.Fatal(err)
	}
	sendVideo(ctx, c, 300)
	n := 0
	for v, err := range c.Outputs(ctx) {
		if err != nil {
			t.Fatalf("Outputs: %v", err)
		}
		var out struct {
			Level float64
			Mean  int
		}
		if err := json.Unmarshal(v, &out); err != nil {
			t.Fatalf("output %s: %v", v, err)
		}
		if out.Level != 0.5 || out.Mean < 10 || out.Mean > 60 { // the pattern's top-left luma: 16 or 46
			t.Fatalf("output %s", v)
		}
		if n++; n == 3 {
			break
		}
	}
	// Outputs of an unknown connection: an HTTPError.
	other, err := client.New(base, &client.Options{ID: "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, err := range other.Outputs(ctx) {
		if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
			t.Fatalf("outputs of an unknown id: %v", err)
		}
	}
}

func echoAudio() fastrtc.AudioHandlerFactory {
	return fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil }).NewHandler
}

func TestFastRTCAudioSendReceive(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	base := serve(t, echoAudio(), fastrtc.Audio, fastrtc.SendReceive)
	c := dial(t, ctx, base, client.Options{SendAudio: true, ReceiveAudio: true, PaceAudio: true})
	go func() {
		// At 16 kHz: the client resamples to 48 kHz.
		_ = c.SendAudio(ctx, media.AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone(16000, 660, 0.5, 16000*3)})
	}()
	readTone(t, ctx, c.ReadAudio, 660, 2*time.Second)
}

func TestFastRTCAudioReceive(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	src := fastrtc.AudioSource(func(s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(yield func(fastrtc.AudioFrame, error) bool) {
			yield(fastrtc.AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, 440, 0.5, 24000*2)}, nil)
		}
	})
	base := serve(t, src, fastrtc.Audio, fastrtc.Receive)
	c := dial(t, ctx, base, client.Options{ReceiveAudio: true})
	readTone(t, ctx, c.ReadAudio, 440, 1500*time.Millisecond)
	// The source ended: the server ends the stream.
	for {
		m, err := c.Message(ctx)
		if err != nil {
			t.Fatalf("no end_stream: %v", err)
		}
		if m.Type == "end_stream" {
			break
		}
	}
}

// avEcho flips video and echoes audio.
type avEcho struct{ fastrtc.AudioHandler }

func (avEcho) Video(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
	return f.FlipVertical(), nil
}

func TestFastRTCAudioVideo(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	f := fastrtc.AudioVideoHandlerFactory(func() fastrtc.AudioVideoHandler { return avEcho{echoAudio()()} })
	base := serve(t, f, fastrtc.AudioVideo, fastrtc.SendReceive)
	c := dial(t, ctx, base, client.Options{SendVideo: true, ReceiveVideo: true, SendAudio: true, ReceiveAudio: true, PaceAudio: true})
	sendVideo(ctx, c, 300)
	go func() {
		_ = c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: tone(48000, 550, 0.5, 48000*3)})
	}()
	audioDone := make(chan struct{})
	go func() {
		defer close(audioDone)
		readTone(t, ctx, c.ReadAudio, 550, 2*time.Second)
	}()
	readVideoGood(t, ctx, c, 20, func(ts uint32) *image.YCbCr { return flipped(pattern(int(ts / 3000))) })
	<-audioDone
}

func TestFastRTCWebSocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    client.WebSocketOptions
	}{
		{"pcm_s16le-16k", client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 16000}},
		{"pcm_s16le-stereo", client.WebSocketOptions{Encoding: client.EncodingPCM16, SampleRate: 24000, Channels: 2}},
		{"mulaw-default", client.WebSocketOptions{}}, // FastRTC's protocol: mu-law, 48 kHz up, 24 kHz down
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			base := serve(t, echoAudio(), fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithInputs(fastrtc.Slider("level", 0, 1, 0.1, 0)))
			o := tc.o
			o.PaceAudio = true
			c, err := client.DialWebSocket(ctx, base, &o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Close(); err != nil {
					t.Error(err)
				}
			}()
			if m, err := c.Message(ctx); err != nil || m.Type != "send_input" {
				t.Fatalf("first message %+v %v", m, err)
			}
			if err := c.SetInput(ctx, map[string]any{"level": 0.3}); err != nil {
				t.Fatal(err)
			}
			go func() {
				_ = c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: tone(48000, 440, 0.5, 48000*3)})
			}()
			want := o.SampleRate
			if want == 0 {
				want = 24000
			}
			read := func(ctx context.Context) (media.AudioFrame, error) {
				a, err := c.ReadAudio(ctx)
				if err == nil && (a.SampleRate != want || a.Channels != max(1, o.Channels)) {
					t.Fatalf("audio at %d Hz, %d channels", a.SampleRate, a.Channels)
				}
				return a, err
			}
			readTone(t, ctx, read, 440, 2*time.Second)
		})
	}
}

// TestFastRTCRefusal: over the concurrency limit, Dial and DialWebSocket return a typed
// refusal; the slot frees when the first connection closes.
func TestFastRTCRefusal(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	base := serve(t, echoAudio(), fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithConcurrencyLimit(1))
	first := dial(t, ctx, base, client.Options{SendAudio: true, ReceiveAudio: true})
	_, err := client.Dial(ctx, base, &client.Options{SendAudio: true, ReceiveAudio: true, SettingEngine: loopback})
	var re *client.RefusedError
	if !errors.Is(err, client.ErrConcurrencyLimit) || !errors.As(err, &re) || re.Meta["limit"] != float64(1) {
		t.Fatalf("second Dial: %v", err)
	}
	_, err = client.DialWebSocket(ctx, base, nil)
	if !errors.Is(err, client.ErrConcurrencyLimit) {
		t.Fatalf("DialWebSocket over the limit: %v", err)
	}
	// The same id again: connection_already_exists.
	_, err = client.Dial(ctx, base, &client.Options{ID: first.ID(), SendAudio: true, SettingEngine: loopback})
	if !errors.Is(err, client.ErrRefused) {
		t.Fatalf("Dial with a live id: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		c, err := client.Dial(ctx, base, &client.Options{SendAudio: true, ReceiveAudio: true, SettingEngine: loopback})
		if err == nil {
			_ = c.Close()
			break
		}
		if !errors.Is(err, client.ErrConcurrencyLimit) || ctx.Err() != nil {
			t.Fatalf("Dial after the first closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
