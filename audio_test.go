package fastrtc

import (
	"context"
	"encoding/json"
	"image"
	"iter"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// tone returns n samples of a sine at freq Hz, amplitude amp (0..1), at rate.
func tone(rate int, freq, amp float64, n int, phase int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i+phase)/float64(rate)))
	}
	return out
}

// sendAudio Opus-encodes pcm (48 kHz mono) in 20 ms packets, paced in real time, on the
// client's audio track. drop, if set, says which packet indexes are not sent (loss).
func (c *testClient) sendAudio(ctx context.Context, pcm []int16, drop func(i int) bool) <-chan struct{} {
	c.t.Helper()
	enc, err := opus.NewEncoder(opus.DefaultEncoderConfig())
	if err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer enc.Close()
		buf := make([]byte, 1500)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 42}}
		for i := 0; (i+1)*960 <= len(pcm); i++ {
			n, err := enc.Encode(pcm[i*960:(i+1)*960], buf)
			if err != nil {
				return
			}
			pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = uint16(i), uint32(i*960), buf[:n]
			if drop == nil || !drop(i) {
				_ = c.audio.WriteRTP(&pkt)
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return done
}

// audioCapture decodes the remote audio track to 48 kHz mono and records packet arrival.
type audioCapture struct {
	mu      sync.Mutex
	pcm     []int16
	packets int
	first   time.Time
	last    time.Time
}

func (a *audioCapture) snapshot() ([]int16, int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int16(nil), a.pcm...), a.packets, a.last.Sub(a.first)
}

func receiveAudio(t *testing.T, tr *webrtc.TrackRemote) *audioCapture {
	t.Helper()
	a := &audioCapture{}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer dec.Close()
		buf := make([]byte, 1500)
		pcm := make([]int16, 5760)
		var pkt rtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			k, err := dec.Decode(pkt.Payload, pcm)
			if err != nil {
				continue
			}
			now := time.Now()
			a.mu.Lock()
			if a.packets == 0 {
				a.first = now
			}
			a.last = now
			a.packets++
			a.pcm = append(a.pcm, pcm[:k]...)
			a.mu.Unlock()
		}
	}()
	return a
}

// goertzelPower returns the power of x at freq relative to its total power (0..1).
func goertzelPower(x []int16, rate int, freq float64) float64 {
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, total float64
	for _, v := range x {
		f := float64(v)
		s := f + coeff*s1 - s2
		s2, s1 = s1, s
		total += f * f
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return p / (total * float64(len(x)) / 2)
}

// zeroCrossFreq estimates the frequency of a tone from its rising zero crossings.
func zeroCrossFreq(x []int16, rate int) float64 {
	first, last, n := -1, -1, 0
	for i := 1; i < len(x); i++ {
		if x[i-1] < 0 && x[i] >= 0 {
			if first < 0 {
				first = i
			} else {
				n++
			}
			last = i
		}
	}
	if n == 0 {
		return 0
	}
	return float64(n) * float64(rate) / float64(last-first)
}

func rms(x []int16) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(max(1, len(x))))
}

func echoFactory() AudioHandlerFactory {
	return AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) { return in, nil }).NewHandler
}

func TestAudioEchoTone(t *testing.T) {
	t.Parallel()
	_, srv := newTestStream(t, echoFactory(), Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := tone(48000, 440, 0.5, 48000*3, 0)
	done := c.sendAudio(ctx, src, nil)
	capt := receiveAudio(t, c.remoteTrack(5*time.Second))
	<-done
	time.Sleep(300 * time.Millisecond)
	pcm, packets, _ := capt.snapshot()
	if packets < 120 {
		t.Fatalf("received %d packets for 150 sent", packets)
	}
	body := pcm[48000/2 : len(pcm)-48000/4] // skip the start-up and the tail
	if f := zeroCrossFreq(body, 48000); math.Abs(f-440) > 440*0.01 {
		t.Errorf("echoed tone at %.1f Hz, want 440", f)
	}
	ratio := rms(body) / rms(src)
	if db := 20 * math.Log10(ratio); math.Abs(db) > 1.5 {
		t.Errorf("echo level %+.1f dB from the source", db)
	}
	if p := goertzelPower(body, 48000, 440); 10*math.Log10(p/(1-p)) < 20 {
		t.Errorf("SNR at 440 Hz: %.1f dB, want > 20", 10*math.Log10(p/(1-p)))
	}
}

// TestAudioOutputAt24k: a handler returning 24 kHz audio reaches the client intact.
func TestAudioOutputAt24k(t *testing.T) {
	t.Parallel()
	var phase atomic.Int64
	h := AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) {
		n := len(in.Samples) * 24000 / in.SampleRate
		p := int(phase.Add(int64(n))) - n
		return AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, 1000, 0.4, n, p)}, nil
	})
	_, srv := newTestStream(t, h, Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := c.sendAudio(ctx, make([]int16, 48000*2), nil)
	capt := receiveAudio(t, c.remoteTrack(5*time.Second))
	<-done
	time.Sleep(200 * time.Millisecond)
	pcm, _, _ := capt.snapshot()
	if len(pcm) < 48000 {
		t.Fatalf("received %d samples", len(pcm))
	}
	body := pcm[48000/4 : len(pcm)-48000/4]
	if f := zeroCrossFreq(body, 48000); math.Abs(f-1000) > 10 {
		t.Errorf("tone at %.1f Hz, want 1000", f)
	}
	if db := 20 * math.Log10(rms(body)/(0.4*32767/math.Sqrt2)); math.Abs(db) > 1.5 {
		t.Errorf("level %+.1f dB", db)
	}
}

// TestAudioSourcePacing: a receive-mode source produces 3 s of audio at once; the client
// gets 150 packets over 3 s of wall time.
func TestAudioSourcePacing(t *testing.T) {
	t.Parallel()
	src := AudioSource(func(s *Session) iter.Seq2[AudioFrame, error] {
		return func(yield func(AudioFrame, error) bool) {
			yield(AudioFrame{SampleRate: 16000, Channels: 1, Samples: tone(16000, 500, 0.5, 16000*3, 0)}, nil)
		}
	})
	s, srv := newTestStream(t, src, Audio, Receive)
	c := newTestClient(t, srv.URL, clientOpts{recvAudio: true})
	c.connect()
	capt := receiveAudio(t, c.remoteTrack(5*time.Second))
	c.waitMsg("end_stream", 10*time.Second)
	time.Sleep(100 * time.Millisecond)
	pcm, packets, span := capt.snapshot()
	if packets < 148 || packets > 152 {
		t.Errorf("%d packets, want 150", packets)
	}
	if d := span.Seconds() + 0.02; math.Abs(d-3) > 3*0.05 {
		t.Errorf("3 s of audio took %.2f s", d)
	}
	if f := zeroCrossFreq(pcm[4800:len(pcm)-4800], 48000); math.Abs(f-500) > 5 {
		t.Errorf("tone at %.1f Hz", f)
	}
	_ = s
}

// avEcho flips video and echoes audio.
type avEcho struct{ AudioHandler }

func (avEcho) Video(s *Session, f *VideoFrame) (image.Image, error) { return f.FlipVertical(), nil }

func TestAudioVideoSendReceive(t *testing.T) {
	t.Parallel()
	factory := AudioVideoHandlerFactory(func() AudioVideoHandler { return avEcho{echoFactory()()} })
	_, srv := newTestStream(t, factory, AudioVideo, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true, sendAudio: true, recvAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendVideo(ctx, 120)
	done := c.sendAudio(ctx, tone(48000, 660, 0.5, 48000*2, 0), nil)
	var frames <-chan receivedFrame
	var capt *audioCapture
	for i := 0; i < 2; i++ {
		tr := c.remoteTrack(5 * time.Second)
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			frames = receiveVideo(t, tr)
		} else {
			capt = receiveAudio(t, tr)
		}
	}
	if frames == nil || capt == nil {
		t.Fatal("want one video and one audio track back")
	}
	good := 0
	for good < 10 {
		select {
		case f := <-frames:
			if yuv.PSNR(f.img, yuv.FlipVertical(nil, testPattern(testW, testH, int(f.ts/3000)))) > 30 {
				good++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d good video frames", good)
		}
	}
	<-done
	time.Sleep(200 * time.Millisecond)
	pcm, _, _ := capt.snapshot()
	if len(pcm) < 48000 {
		t.Fatalf("%d audio samples back", len(pcm))
	}
	if f := zeroCrossFreq(pcm[9600:len(pcm)-4800], 48000); math.Abs(f-660) > 7 {
		t.Errorf("audio at %.1f Hz, want 660", f)
	}
}

// TestAudioStereoSource: stereo audio from a source reaches a mono output with both
// channels mixed.
func TestAudioStereoSource(t *testing.T) {
	t.Parallel()
	src := AudioSource(func(s *Session) iter.Seq2[AudioFrame, error] {
		return func(yield func(AudioFrame, error) bool) {
			const n = 48000
			st := make([]int16, 2*n)
			l, r := tone(48000, 440, 0.4, n, 0), tone(48000, 880, 0.4, n, 0)
			for i := 0; i < n; i++ {
				st[2*i], st[2*i+1] = l[i], r[i]
			}
			yield(AudioFrame{SampleRate: 48000, Channels: 2, Samples: st}, nil)
		}
	})
	_, srv := newTestStream(t, src, Audio, Receive)
	c := newTestClient(t, srv.URL, clientOpts{recvAudio: true})
	c.connect()
	tr := c.remoteTrack(5 * time.Second)
	// Mono output by default: the channels are mixed, both tones present.
	capt := receiveAudio(t, tr)
	c.waitMsg("end_stream", 5*time.Second)
	pcm, _, _ := capt.snapshot()
	if len(pcm) < 40000 {
		t.Fatalf("%d samples", len(pcm))
	}
	body := pcm[4800 : len(pcm)-4800]
	p440, p880 := goertzelPower(body, 48000, 440), goertzelPower(body, 48000, 880)
	if p440 < 0.3 || p880 < 0.3 {
		t.Errorf("mixed stereo: power at 440 Hz %.2f, 880 Hz %.2f; want both ~0.5", p440, p880)
	}
}

// hookedEcho records its start-up and shutdown hooks.
type hookedEcho struct {
	AudioHandler
	started, stopped *atomic.Int32
}

func (h hookedEcho) Start(s *Session) error { h.started.Add(1); return nil }
func (h hookedEcho) Shutdown(s *Session)    { h.stopped.Add(1) }

func TestAudioHandlerHooks(t *testing.T) {
	t.Parallel()
	var started, stopped atomic.Int32
	f := AudioHandlerFactory(func() AudioHandler { return hookedEcho{echoFactory()(), &started, &stopped} })
	s, srv := newTestStream(t, f, Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	sess := s.mustSession(t, c.id)
	for i := 0; started.Load() == 0 && i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if started.Load() != 1 {
		t.Fatal("Start not called")
	}
	_ = c.pc.Close()
	<-sess.Done()
	if stopped.Load() != 1 {
		t.Error("Shutdown not called")
	}
}

// stereoEcho echoes audio with stereo in and out.
type stereoEcho struct{ AudioHandler }

func (stereoEcho) AudioLayout() AudioLayout {
	return AudioLayout{InputChannels: 2, OutputRate: 48000, OutputChannels: 2}
}

// TestAudioStereoEcho: a stereo handler gets both channels of the client's stereo Opus and
// its stereo output reaches the client with the channels apart.
func TestAudioStereoEcho(t *testing.T) {
	t.Parallel()
	f := AudioHandlerFactory(func() AudioHandler { return stereoEcho{echoFactory()()} })
	_, srv := newTestStream(t, f, Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	enc, err := opus.NewEncoder(opus.EncoderConfig{SampleRate: 48000, Channels: 2, BitrateBps: 96000, Complexity: 5, FEC: true, PacketLossPercent: 10})
	if err != nil {
		t.Fatal(err)
	}
	l, r := tone(48000, 440, 0.4, 48000*2, 0), tone(48000, 1000, 0.4, 48000*2, 0)
	stop, sent := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-sent }()
	go func() { // owns enc
		defer close(sent)
		defer enc.Close()
		buf := make([]byte, 1500)
		st := make([]int16, 1920)
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 7}}
		for i := 0; (i+1)*960 <= len(l); i++ {
			for j := 0; j < 960; j++ {
				st[2*j], st[2*j+1] = l[i*960+j], r[i*960+j]
			}
			n, err := enc.Encode(st, buf)
			if err != nil {
				return
			}
			pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = uint16(i), uint32(i*960), buf[:n]
			_ = c.audio.WriteRTP(&pkt)
			select {
			case <-time.After(20 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}()
	tr := c.remoteTrack(5 * time.Second)
	dec, err := opus.NewDecoder(48000, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var left, right []int16
	buf := make([]byte, 1500)
	pcm := make([]int16, 5760*2)
	var pkt rtp.Packet
	deadline := time.Now().Add(5 * time.Second)
	for len(left) < 48000 && time.Now().Before(deadline) {
		_ = tr.SetReadDeadline(deadline)
		n, _, err := tr.Read(buf)
		if err != nil {
			break
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		k, err := dec.Decode(pkt.Payload, pcm)
		if err != nil {
			continue
		}
		for j := 0; j < k; j++ {
			left, right = append(left, pcm[2*j]), append(right, pcm[2*j+1])
		}
	}
	if len(left) < 48000 {
		t.Fatalf("%d stereo samples back", len(left))
	}
	lb, rb := left[9600:], right[9600:]
	// Each channel carries its own tone, and little of the other's.
	if own, other := goertzelPower(lb, 48000, 440), goertzelPower(lb, 48000, 1000); own < 0.8 || other > 0.1 {
		t.Errorf("left channel: 440 Hz power %.2f, 1000 Hz %.2f", own, other)
	}
	if own, other := goertzelPower(rb, 48000, 1000), goertzelPower(rb, 48000, 440); own < 0.8 || other > 0.1 {
		t.Errorf("right channel: 1000 Hz power %.2f, 440 Hz %.2f", own, other)
	}
}

// TestAudioSendModeOutputs: in send mode the handler hears the client and reports over
// /outputs; no audio goes back.
func TestAudioSendModeOutputs(t *testing.T) {
	t.Parallel()
	h := AudioFunc(func(s *Session, in AudioFrame) (AudioFrame, error) {
		if err := s.Emit(math.Round(rms(in.Samples))); err != nil {
			return AudioFrame{}, err
		}
		return in, nil // ignored in send mode
	})
	_, srv := newTestStream(t, h, Audio, Send)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true})
	c.connect()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.sendAudio(ctx, tone(48000, 440, 0.5, 48000*2, 0), nil)
	ch, status := readSSE(t, ctx, srv.URL+"/outputs?webrtc_id="+c.id)
	if status != 200 {
		t.Fatalf("outputs: %d", status)
	}
	want := 0.5 * 32767 / math.Sqrt2
	for got := 0; got < 20; {
		select {
		case v := <-ch:
			var level float64
			if err := json.Unmarshal([]byte(v), &level); err != nil {
				t.Fatal(err)
			}
			if level > want*0.8 && level < want*1.2 {
				got++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d level outputs near %.0f", got, want)
		}
	}
}
