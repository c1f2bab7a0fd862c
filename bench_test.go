package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/vsend"

	"context"
	"errors"
	"image"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/fastrtc-go/fastrtc/internal/opus"
	"github.com/fastrtc-go/fastrtc/internal/vp8rtp"
	"github.com/fastrtc-go/fastrtc/internal/vpx"
	"github.com/fastrtc-go/fastrtc/internal/wav"
)

var noisyOnce sync.Once

// noisyFrames returns the VP8 frames of a 640x480 noisy test pattern at ~1.5 Mb/s (STACK.md's
// camera-like fixture), made with ffmpeg on first use (testdata/video/noisy640.ivf, not
// committed).
func noisyFrames(b *testing.B) [][]byte {
	b.Helper()
	path := filepath.Join("testdata", "video", "noisy640.ivf")
	noisyOnce.Do(func() {
		if _, err := os.Stat(path); err == nil {
			return
		}
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		cmd := exec.Command("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x480:rate=30", "-t", "10",
			"-vf", "noise=alls=12:allf=t", "-c:v", "libvpx", "-b:v", "1500k", "-minrate", "1500k", "-maxrate", "1500k",
			"-deadline", "realtime", "-cpu-used", "8", "-g", "60", "-auto-alt-ref", "0", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Logf("ffmpeg: %v %s", err, out)
		}
	})
	f, err := os.Open(path)
	if err != nil {
		b.Skipf("no fixture (needs ffmpeg): %v", err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		b.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, fr)
	}
	return frames
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}

// reportPerFrame reports wall and CPU milliseconds per operation: CPU time is steadier than
// wall time on a shared machine.
func reportPerFrame(b *testing.B, cpu0 time.Duration, unit string) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/"+unit)
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/"+unit)
}

// packetize splits the frames into RTP packets, as a browser would send them.
func packetize(frames [][]byte) [][]*rtp.Packet {
	pk := vp8rtp.NewPacketizer(1, 96, 1200)
	out := make([][]*rtp.Packet, len(frames))
	for i, f := range frames {
		_ = pk.Packetize(f, uint32(i*3000), func(p *rtp.Packet) error {
			cp := *p
			cp.Payload = append([]byte(nil), p.Payload...)
			out[i] = append(out[i], &cp)
			return nil
		})
	}
	return out
}

// BenchmarkVideoPath640 is the library's per-frame work for a 640x480 camera frame: RTP in
// -> frame assembly -> libvpx decode -> handler (vertical flip) -> libvpx encode at the
// default settings -> RTP out (packets discarded instead of sent).
func BenchmarkVideoPath640(b *testing.B) {
	frames := noisyFrames(b)
	pkts := packetize(frames)
	s, err := New(VideoFunc(flipHandler), Video, SendReceive)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	dec, err := vpx.NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	asm := vp8rtp.NewAssembler()
	snd, err := vsend.New(vsend.Config{Write: func(*rtp.Packet) error { return nil }, Unpaced: true,
		StartKbps: s.cfg.bitrateKbps, MaxKbps: s.cfg.bitrateKbps, Speed: s.cfg.vp8Speed, OnEncoder: s.codecOpened})
	if err != nil {
		b.Fatal(err)
	}
	out := &videoOut{snd: snd}
	defer out.close(s)
	sess := benchSession(s)
	frame := &VideoFrame{}
	var seq uint16
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		var img *image.YCbCr
		for _, p := range pkts[i%len(pkts)] {
			p.SequenceNumber, p.Timestamp = seq, uint32(i*3000) // a continuous stream across loops
			seq++
			data, _, _, ready, _ := asm.Push(p)
			if ready {
				if img, err = dec.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
		}
		if img == nil {
			continue
		}
		frame.Image, frame.RTPTimestamp, frame.Index = img, uint32(i*3000), i
		res, err := s.callVideo(sess, frame)
		if err != nil {
			b.Fatal(err)
		}
		if err := out.send(s, res, int64(i*3000), uint32(i*3000)); err != nil {
			b.Fatal(err)
		}
	}
	reportPerFrame(b, cpu0, "frame")
}

// BenchmarkVP8DecodeEncode640 is the floor the library is compared with: libvpx's own
// decode + encode of the same frames at the same settings, nothing else.
func BenchmarkVP8DecodeEncode640(b *testing.B) {
	frames := noisyFrames(b)
	dec, err := vpx.NewDecoder()
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	enc, err := vpx.NewEncoder(vpx.EncoderConfig{BitrateKbps: 1500, FPS: 30, CPUUsed: defaultVP8Speed, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		img, err := dec.Decode(frames[i%len(frames)])
		if err != nil {
			b.Fatal(err)
		}
		if buf, _, err = enc.Encode(buf, img, int64(i*3000), i == 0); err != nil {
			b.Fatal(err)
		}
	}
	reportPerFrame(b, cpu0, "frame")
}

// speechPackets encodes the speech fixture to 20 ms Opus packets (48 kHz mono).
func speechPackets(b *testing.B) [][]byte {
	b.Helper()
	pcm, _, _, err := wav.ReadFile("testdata/audio/hello48k.wav")
	if err != nil {
		b.Fatal(err)
	}
	enc, err := opus.NewEncoder(opus.DefaultEncoderConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	var pkts [][]byte
	buf := make([]byte, 1500)
	for i := 0; (i+1)*960 <= len(pcm); i++ {
		n, err := enc.Encode(pcm[i*960:(i+1)*960], buf)
		if err != nil {
			b.Fatal(err)
		}
		pkts = append(pkts, append([]byte(nil), buf[:n]...))
	}
	return pkts
}

// BenchmarkAudioEchoPath is the library's work per 20 ms of an echo session: Opus decode
// (48 kHz) -> handler input -> AudioFunc echo -> output queue, resampled 48k -> 24k (the
// default output rate) -> 20 ms frame -> Opus encode at the default complexity.
func BenchmarkAudioEchoPath(b *testing.B) {
	pkts := speechPackets(b)
	s, err := New(echoFactory(), Audio, SendReceive)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sess := benchSession(s)
	if err := s.bindSessionHandler(sess); err != nil {
		b.Fatal(err)
	}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	enc, err := opus.NewEncoder(opus.EncoderConfig{SampleRate: 24000, Channels: 1, BitrateBps: 32000, Complexity: 5, FEC: true, PacketLossPercent: 10})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	ebuf := make([]byte, 1500)
	out := newAudioOut(24000, 1, func(f []int16, _ bool) error { _, err := enc.Encode(f, ebuf); return err })
	sess.audioOut = out
	// The benchmark feeds audio far faster than real time: unpaced, or the input guard
	// (audio more than 2 s ahead is dropped) leaves Emit waiting forever.
	in := &audioIn{sess: sess, h: sess.handler, rate: 48000, ch: 1, unpaced: true}
	pcm := make([]int16, 5760)
	frame := make([]int16, out.frameLen)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := dec.Decode(pkts[i%len(pkts)], pcm)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.receive(pcm[:n], 48000, 1); err != nil {
			b.Fatal(err)
		}
		f, err := sess.handler.Emit(ctx, sess)
		if err != nil {
			b.Fatal(err)
		}
		if err := out.push(ctx, f); err != nil {
			b.Fatal(err)
		}
		out.mu.Lock()
		k := copy(frame, out.buf)
		out.buf = out.buf[:copy(out.buf, out.buf[k:])]
		out.mu.Unlock()
		if k == len(frame) {
			if err := out.sink(frame, false); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/20ms")
}

// BenchmarkOpusDecodeEncode is the floor for the echo path: libopus decode (48 kHz) and
// encode (24 kHz, complexity 5) of the same packets, nothing else.
func BenchmarkOpusDecodeEncode(b *testing.B) {
	pkts := speechPackets(b)
	dec, _ := opus.NewDecoder(48000, 1)
	defer dec.Close()
	enc, _ := opus.NewEncoder(opus.EncoderConfig{SampleRate: 24000, Channels: 1, BitrateBps: 32000, Complexity: 5, FEC: true, PacketLossPercent: 10})
	defer enc.Close()
	pcm := make([]int16, 5760)
	half := make([]int16, 480)
	ebuf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := dec.Decode(pkts[i%len(pkts)], pcm)
		if err != nil {
			b.Fatal(err)
		}
		for j := range half { // naive 2:1 decimation, just to feed the encoder
			half[j] = pcm[min(2*j, n-1)]
		}
		if _, err := enc.Encode(half, ebuf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/20ms")
}

// benchSession is a session with no client: its control messages go nowhere.
func benchSession(s *Stream) *Session {
	sess := s.newSession("bench", nil)
	sess.tr = nopTransport{}
	return sess
}

// nopTransport is a transport that drops everything.
type nopTransport struct{}

func (nopTransport) send([]byte) error   { return nil }
func (nopTransport) flush(time.Duration) {}
func (nopTransport) close(error)         {}
func (nopTransport) stats(*SessionStats) {}
func (nopTransport) kind() string        { return "webrtc" }
