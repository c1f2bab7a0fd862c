package fastrtc

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"iter"
	"time"
)

// AudioFrame is a block of 16-bit PCM audio. It is a plain value; frames given to handlers
// document how long their Samples stay valid.
type AudioFrame struct {
	// SampleRate in Hz.
	SampleRate int
	// Channels is 1 (mono) or 2 (stereo).
	Channels int
	// Samples are interleaved (L R L R... for stereo), len = frames * Channels.
	Samples []int16
}

// Duration returns the frame's length in time.
func (f AudioFrame) Duration() time.Duration {
	if f.SampleRate <= 0 || f.Channels <= 0 {
		return 0
	}
	return time.Duration(len(f.Samples)/f.Channels) * time.Second / time.Duration(f.SampleRate)
}

// Float32 appends the samples to dst scaled to [-1, 1) and returns it.
func (f AudioFrame) Float32(dst []float32) []float32 {
	for _, s := range f.Samples {
		dst = append(dst, float32(s)/32768)
	}
	return dst
}

// AudioFromFloat32 builds an AudioFrame from samples in [-1, 1] (clipped).
func AudioFromFloat32(sampleRate, channels int, samples []float32) AudioFrame {
	out := make([]int16, len(samples))
	for i, v := range samples {
		x := v * 32768
		switch {
		case x > 32767:
			x = 32767
		case x < -32768:
			x = -32768
		}
		out[i] = int16(x)
	}
	return AudioFrame{SampleRate: sampleRate, Channels: channels, Samples: out}
}

// AudioHandler handles one connection's audio (FastRTC's StreamHandler). A Stream makes one
// instance per connection from an AudioHandlerFactory.
//
// Receive is called on the session's audio input goroutine with each input frame (about
// 20 ms, at the handler's input rate); it should return quickly. Emit is called in a loop on
// the session's audio output goroutine and blocks until the handler has output: it must wait
// on ctx (done when the session ends) or a channel, never poll. It may return audio at any
// rate and length; the Stream resamples it to the output rate, cuts it into 20 ms frames and
// paces them in real time. Emit returning io.EOF ends the session normally after the queued
// audio was sent; any other error ends the session with that error. Receive and Emit run
// concurrently with each other.
type AudioHandler interface {
	Receive(s *Session, frame AudioFrame) error
	Emit(ctx context.Context, s *Session) (AudioFrame, error)
}

// AudioHandlerFactory makes the AudioHandler of a new connection.
type AudioHandlerFactory func() AudioHandler

// AudioStarter is implemented by handlers with a start-up hook, called once the connection is
// up, before the first Receive.
type AudioStarter interface {
	Start(s *Session) error
}

// AudioShutdowner is implemented by handlers with a shutdown hook, called once after the
// session ended and Receive and Emit have returned.
type AudioShutdowner interface {
	Shutdown(s *Session)
}

// AudioLayout declares the audio formats a handler wants. Zero fields take the defaults.
type AudioLayout struct {
	InputRate      int // rate of frames given to Receive (default 48000)
	InputChannels  int // 1 (default) or 2
	OutputRate     int // rate sent to the client (default: the stream's WithAudioOutputRate)
	OutputChannels int // channels sent to the client: 1 (default) or 2
}

// AudioLayouter is implemented by handlers that declare their audio formats.
type AudioLayouter interface {
	AudioLayout() AudioLayout
}

// AudioSource generates the audio of a receive-mode connection (the server speaks). The
// Stream resamples and paces it in real time: yield blocks while more than a moment of audio
// is queued, so a generator may produce as fast as it can. Yielding an error ends the session
// with it; the session ends normally once the sequence ends and its audio was sent.
type AudioSource func(s *Session) iter.Seq2[AudioFrame, error]

// AudioVideoHandler handles audio and video on one connection: the audio side is an
// AudioHandler, and Video processes each video frame like a VideoFunc (see VideoFunc for
// the rules on frames and images; it runs on the session's video goroutine, concurrently with
// the audio methods). In send mode its returned images are ignored.
type AudioVideoHandler interface {
	AudioHandler
	Video(s *Session, frame *VideoFrame) (image.Image, error)
}

// AudioVideoHandlerFactory makes the AudioVideoHandler of a new connection.
type AudioVideoHandlerFactory func() AudioVideoHandler

type (
	audioFactorySig      = func() AudioHandler
	audioSourceSig       = func(s *Session) iter.Seq2[AudioFrame, error]
	audioVideoFactorySig = func() AudioVideoHandler
)

// audioOptions are the audio settings of a Stream.
type audioOptions struct {
	outputRate     int
	opusComplexity int
	opusBitrate    int
}

func defaultAudioOptions() audioOptions {
	return audioOptions{outputRate: 24000, opusComplexity: 5, opusBitrate: 32000}
}

func (o audioOptions) check() error {
	switch {
	case o.outputRate < 8000 || o.outputRate > 48000 || o.outputRate%50 != 0:
		return fmt.Errorf("%w: audio output rate %d must be a multiple of 50 in 8000..48000", ErrInvalidConfig, o.outputRate)
	case o.opusComplexity < 0 || o.opusComplexity > 10:
		return fmt.Errorf("%w: Opus complexity %d outside 0..10", ErrInvalidConfig, o.opusComplexity)
	case o.opusBitrate < 6000 || o.opusBitrate > 510000:
		return fmt.Errorf("%w: Opus bitrate %d outside 6000..510000", ErrInvalidConfig, o.opusBitrate)
	}
	return nil
}

// WithAudioOutputRate sets the rate audio is sent at (default 24000 Hz, a multiple of 50).
// Handlers may return any rate; it is resampled to this one.
func WithAudioOutputRate(hz int) Option { return func(c *config) { c.audioOpts.outputRate = hz } }

// WithOpusComplexity sets the Opus encoder's complexity, 0..10 (default 5: about 0.2 ms per
// 20 ms frame; see the README's benchmarks).
func WithOpusComplexity(n int) Option { return func(c *config) { c.audioOpts.opusComplexity = n } }

// WithOpusBitrate sets the Opus target bitrate in bit/s (default 32000).
func WithOpusBitrate(bps int) Option { return func(c *config) { c.audioOpts.opusBitrate = bps } }

// audioConfig is the bound audio-side handler of a Stream.
type audioConfig struct {
	factory   func() AudioHandler      // audio send-receive / send
	source    AudioSource              // audio receive
	avFactory func() AudioVideoHandler // audio-video
	pause     bool                     // the handler is a ReplyOnPause
}

func (s *Stream) bindAudioHandler(h any, want func(string) error) error {
	ac := &audioConfig{}
	switch s.modality {
	case Audio:
		if s.mode == Receive {
			switch f := h.(type) {
			case AudioSource:
				ac.source = f
			case audioSourceSig:
				ac.source = f
			default:
				return want("AudioSource (func(*Session) iter.Seq2[AudioFrame, error])")
			}
			break
		}
		switch f := h.(type) {
		case AudioHandlerFactory:
			ac.factory = f
		case audioFactorySig:
			ac.factory = f
		case *ReplyOnPause:
			ac.factory, ac.pause = f.Copy, true
		case interface{ Copy() AudioHandler }:
			ac.factory = f.Copy
		default:
			return want("AudioHandlerFactory (func() AudioHandler) or an AudioHandler with a Copy method")
		}
	case AudioVideo:
		if s.mode == Receive {
			return fmt.Errorf("%w: an audio-video stream supports send-receive and send modes, not receive", ErrInvalidConfig)
		}
		switch f := h.(type) {
		case AudioVideoHandlerFactory:
			ac.avFactory = f
		case audioVideoFactorySig:
			ac.avFactory = f
		default:
			return want("AudioVideoHandlerFactory (func() AudioVideoHandler)")
		}
		ac.factory = func() AudioHandler { return ac.avFactory() }
	}
	s.audio = ac
	return nil
}

// pauseDetection reports whether the stream's handler is a ReplyOnPause (for the page).
func (s *Stream) pauseDetection() bool { return s.audio != nil && s.audio.pause }

// bindSessionHandler makes the session's audio handler (if the stream has one) and its
// layout, and registers the shutdown hook.
// A panic in the factory or in AudioLayout is returned as an error wrapping ErrHandlerPanic.
func (s *Stream) bindSessionHandler(sess *Session) (err error) {
	if s.audio == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: making the session's handler: %v", ErrHandlerPanic, r)
		}
	}()
	var h AudioHandler
	if s.audio.factory != nil {
		if h = s.audio.factory(); h == nil {
			return fmt.Errorf("fastrtc: the handler factory returned nil")
		}
	}
	layout := AudioLayout{}
	if l, ok := h.(AudioLayouter); ok {
		layout = l.AudioLayout()
	}
	if layout.InputRate == 0 {
		layout.InputRate = 48000
	}
	if layout.InputChannels == 0 {
		layout.InputChannels = 1
	}
	if layout.OutputRate == 0 {
		layout.OutputRate = s.cfg.audioOpts.outputRate
	}
	if layout.OutputChannels == 0 {
		layout.OutputChannels = 1
	}
	sess.handler, sess.layout = h, layout
	if sd, ok := h.(AudioShutdowner); ok {
		sess.onEnd(func() { sd.Shutdown(sess) })
	}
	return nil
}

// isEOF reports whether a handler's error means a normal end.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }

// AudioFunc adapts a function to an AudioHandlerFactory: each input frame goes through fn
// and what it returns (if it has samples) is sent back, paced in real time. fn runs on the
// session's audio input goroutine; its input's samples are only valid during the call, and it
// may return them (they are copied) or samples it owns. Up to one second of output waits for
// sending; beyond that, frames are dropped (fn is faster than real time).
func AudioFunc(fn func(s *Session, in AudioFrame) (AudioFrame, error)) AudioHandlerFactory {
	return func() AudioHandler {
		return &funcHandler{fn: fn, ch: make(chan AudioFrame, 50), free: make(chan []int16, 52)}
	}
}

// funcHandler is the AudioHandler behind AudioFunc. Output samples are copied into buffers
// recycled through free, so a steady stream allocates nothing.
type funcHandler struct {
	fn   func(s *Session, in AudioFrame) (AudioFrame, error)
	ch   chan AudioFrame
	free chan []int16
	last []int16 // the buffer Emit returned last: free again at the next Emit
}

// Receive runs fn and queues its output.
func (h *funcHandler) Receive(s *Session, f AudioFrame) error {
	out, err := h.fn(s, f)
	if err != nil || len(out.Samples) == 0 {
		return err
	}
	var buf []int16
	select {
	case buf = <-h.free:
	default:
	}
	out.Samples = append(buf[:0], out.Samples...)
	select {
	case h.ch <- out:
	default:
	}
	return nil
}

// Emit returns the next queued output, waiting on ctx.
func (h *funcHandler) Emit(ctx context.Context, s *Session) (AudioFrame, error) {
	if h.last != nil {
		select {
		case h.free <- h.last:
		default:
		}
		h.last = nil
	}
	select {
	case f := <-h.ch:
		h.last = f.Samples
		return f, nil
	case <-ctx.Done():
		return AudioFrame{}, ctx.Err()
	}
}
