package fastrtc

import (
	"github.com/fastrtc-go/fastrtc/internal/pcm"

	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/resample"
)

// frameDuration is the length of every audio frame the Stream sends.
const frameDuration = 20 * time.Millisecond

// maxAhead is how much output audio may queue before Emit and audio sources are held back.
const maxAhead = time.Second

// audioOut queues a session's outgoing audio at the transport's rate and paces it out in
// 20 ms frames to a sink (an Opus track, a WebSocket). Safe for concurrent use: handlers push
// and clear from their goroutines while run paces on its own.
type audioOut struct {
	rate, channels int
	frameLen       int // samples per 20 ms frame, all channels
	sink           func(frame []int16, resumed bool) error
	onClear        func() // called after a clear (telephone: tell Twilio to drop its buffer)

	mu      sync.Mutex
	buf     []int16
	res     *resample.Resampler
	resRate int
	resCh   int
	conv    []int16
	notify  chan struct{} // cap 1: audio was added
	space   chan struct{} // cap 1: the queue shrank below maxAhead
	drained chan struct{} // cap 1: the queue ran empty
	gen     uint64        // incremented by clear: audio pushed across a clear is dropped
	sent    *atomic.Int64 // if set, counts the audio sent (the session's stats)
}

func newAudioOut(rate, channels int, sink func([]int16, bool) error) *audioOut {
	return &audioOut{
		rate: rate, channels: channels, frameLen: rate / 50 * channels, sink: sink,
		notify: make(chan struct{}, 1), space: make(chan struct{}, 1), drained: make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push resamples f to the output format and queues it, waiting while a second or more is
// already queued (so a fast producer is held back in real time) until ctx is done.
func (o *audioOut) push(ctx context.Context, f AudioFrame) error {
	if len(f.Samples) == 0 {
		return nil
	}
	if f.SampleRate <= 0 || f.Channels < 1 || f.Channels > 2 || len(f.Samples)%f.Channels != 0 {
		return fmt.Errorf("fastrtc: invalid audio frame: %d Hz, %d channels, %d samples", f.SampleRate, f.Channels, len(f.Samples))
	}
	limit := int(int64(o.rate) * int64(o.channels) * int64(maxAhead) / int64(time.Second))
	o.mu.Lock()
	gen := o.gen
	o.mu.Unlock()
	for {
		o.mu.Lock()
		if o.gen != gen {
			o.mu.Unlock()
			return nil // cleared while waiting: this audio belongs to what was interrupted
		}
		if len(o.buf) < limit {
			break
		}
		o.mu.Unlock()
		select {
		case <-o.space:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer o.mu.Unlock()
	src := convertChannels(&o.conv, f.Samples, f.Channels, o.channels)
	if f.SampleRate == o.rate {
		o.buf = append(o.buf, src...)
	} else {
		if o.res == nil || o.resRate != f.SampleRate || o.resCh != o.channels {
			r, err := resample.New(f.SampleRate, o.rate, o.channels)
			if err != nil {
				return fmt.Errorf("fastrtc: resample %d -> %d Hz: %w", f.SampleRate, o.rate, err)
			}
			o.res, o.resRate, o.resCh = r, f.SampleRate, o.channels
		}
		o.buf = o.res.Process(o.buf, src)
	}
	signal(o.notify)
	return nil
}

// convertChannels returns src with from channels as to channels (mono <-> stereo), using
// *scratch when a conversion is needed.
func convertChannels(scratch *[]int16, src []int16, from, to int) []int16 {
	if from == to {
		return src
	}
	*scratch = pcm.AppendChannels((*scratch)[:0], src, from, to)
	return *scratch
}

// clear drops all queued audio at once (an interruption).
func (o *audioOut) clear() {
	o.mu.Lock()
	o.buf = o.buf[:0]
	o.gen++
	if o.res != nil {
		o.res.Reset()
	}
	o.mu.Unlock()
	signal(o.space)
	signal(o.drained)
	if o.onClear != nil {
		o.onClear()
	}
}

// queued returns the duration of audio waiting to be sent.
func (o *audioOut) queued() time.Duration {
	o.mu.Lock()
	n := len(o.buf)
	o.mu.Unlock()
	return time.Duration(n/o.channels) * time.Second / time.Duration(o.rate)
}

// waitDrained waits until nothing is queued, d passes, or ctx is done (the pacer has then
// stopped and nothing will drain).
func (o *audioOut) waitDrained(ctx context.Context, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for o.queued() > 0 {
		select {
		case <-o.drained:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
	time.Sleep(2 * frameDuration) // the last frame's packet leaves
}

// run paces queued audio out, one 20 ms frame per 20 ms, until ctx is done. While nothing is
// queued it blocks without a timer, so an idle session costs no CPU. A partial frame is
// padded with silence if the rest has not come by its time slot.
func (o *audioOut) run(ctx context.Context) error {
	frame := make([]int16, o.frameLen)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// sleep waits d (or until audio arrives, with wake), reporting false when ctx is done.
	sleep := func(d time.Duration, wake bool) (alive, woken bool) {
		if d <= 0 {
			return true, false
		}
		timer.Reset(d)
		defer timer.Stop()
		notify := o.notify
		if !wake {
			notify = nil
		}
		select {
		case <-timer.C:
			return true, false
		case <-notify:
			return true, true
		case <-ctx.Done():
			return false, false
		}
	}
	var next time.Time
	idle := true
	for {
		o.mu.Lock()
		n := len(o.buf)
		o.mu.Unlock()
		if n == 0 {
			if !idle {
				// Audio pushed before this frame's slot continues the stream without a gap.
				alive, woken := sleep(time.Until(next), true)
				if !alive {
					return nil
				}
				if woken {
					continue
				}
				idle = true
			}
			signal(o.drained)
			select {
			case <-o.notify:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		resumed := idle
		if idle {
			next = time.Now()
			if n < o.frameLen {
				next = next.Add(frameDuration) // give the rest of a partial first frame a moment
			}
			idle = false
		} else if time.Since(next) > 5*frameDuration {
			next = time.Now() // fell far behind: do not burst to catch up
		}
		if alive, _ := sleep(time.Until(next), false); !alive {
			return nil
		}
		o.mu.Lock()
		k := copy(frame, o.buf)
		o.buf = o.buf[:copy(o.buf, o.buf[k:])]
		o.mu.Unlock()
		clear(frame[k:])
		signal(o.space)
		if k == 0 { // cleared meanwhile
			continue
		}
		if o.sent != nil {
			o.sent.Add(int64(frameDuration))
		}
		if err := o.sink(frame, resumed); err != nil {
			return err
		}
		next = next.Add(frameDuration)
	}
}

// audioIn converts transport audio to the handler's input format and calls Receive.
type audioIn struct {
	sess    *Session
	h       AudioHandler
	rate    int // handler input rate
	ch      int // handler input channels
	res     *resample.Resampler
	resRate int
	conv    []int16
	out     []int16

	clock        time.Time     // where the audio taken so far ends, in real time (never behind now)
	unpaced      bool          // no bound (benchmarks feeding audio faster than real time)
	droppedAhead time.Duration // audio dropped for running ahead of real time
	warned       time.Time     // last warning about it
}

// maxInputAhead is how far a client's audio may run ahead of real time (bursts, jitter
// buffers) before the excess is dropped.
const maxInputAhead = 2 * time.Second

// receive delivers pcm (interleaved, at rate with channels) to the handler. Input that runs
// ahead of real time by more than maxInputAhead (a client pushing minutes of audio at once,
// which would make a voice agent reply, and pay for model calls, faster than anyone speaks)
// is dropped, and the client is warned (at most every 5 s). The bound is a sliding window:
// time without audio is not banked (one frame, 20 s idle, then 20 s of audio in 4 ms was
// all taken when the bound counted from the first frame).
func (a *audioIn) receive(pcm []int16, rate, channels int) error {
	if channels > 0 && rate > 0 && !a.unpaced {
		now := time.Now()
		if a.clock.Before(now) {
			a.clock = now
		}
		d := time.Duration(len(pcm)/channels) * time.Second / time.Duration(rate)
		if a.clock.Add(d).After(now.Add(maxInputAhead)) {
			a.droppedAhead += d
			if now.Sub(a.warned) >= 5*time.Second {
				a.warned = now
				a.sess.log.Warn("input audio ahead of real time: dropped", "dropped", a.droppedAhead)
				_ = a.sess.Warn(fmt.Sprintf("audio input runs ahead of real time: %v dropped so far (send at most real time)", a.droppedAhead.Round(time.Millisecond)))
			}
			return nil
		}
		a.clock = a.clock.Add(d)
		a.sess.counters.audioIn.Add(int64(d))
	}
	src := convertChannels(&a.conv, pcm, channels, a.ch)
	if rate != a.rate {
		if a.res == nil || a.resRate != rate {
			r, err := resample.New(rate, a.rate, a.ch)
			if err != nil {
				return fmt.Errorf("fastrtc: resample %d -> %d Hz: %w", rate, a.rate, err)
			}
			a.res, a.resRate = r, rate
		}
		a.out = a.res.Process(a.out[:0], src)
		src = a.out
	}
	if len(src) == 0 {
		return nil
	}
	return a.sess.callReceive(a.h, AudioFrame{SampleRate: a.rate, Channels: a.ch, Samples: src})
}

// callReceive runs the handler's Receive, turning a panic into an error.
func (s *Session) callReceive(h AudioHandler, f AudioFrame) error {
	defer s.stream.metrics.handlerAudio.since(time.Now())
	return handlerError(safely(func() error { return h.Receive(s, f) }))
}

// callEmit runs the handler's Emit, turning a panic into an error.
func (s *Session) callEmit(h AudioHandler) (f AudioFrame, err error) {
	err = safely(func() (err error) {
		f, err = h.Emit(s.ctx, s)
		return err
	})
	if err != nil && !isEOF(err) {
		err = handlerError(err)
	}
	return f, err
}

// runAudioEmit calls the handler's Emit in a loop and queues its audio, until the session
// ends.
func (s *Stream) runAudioEmit(sess *Session, h AudioHandler, out *audioOut) {
	for {
		f, err := sess.callEmit(h)
		if sess.ctx.Err() != nil {
			return
		}
		if isEOF(err) {
			out.waitDrained(sess.ctx, time.Hour)
			sess.End("")
			return
		}
		if err != nil {
			sess.fail(err)
			return
		}
		if err := out.push(sess.ctx, f); err != nil {
			if sess.ctx.Err() == nil {
				sess.fail(handlerError(err))
			}
			return
		}
	}
}

// runAudioSource feeds a receive-mode source into out.
func (s *Stream) runAudioSource(sess *Session, out *audioOut) {
	for f, err := range s.audio.source(sess) {
		if err != nil {
			sess.fail(handlerError(err))
			return
		}
		if out.push(sess.ctx, f) != nil {
			return
		}
	}
	out.waitDrained(sess.ctx, time.Hour)
	if sess.ctx.Err() == nil {
		sess.End("")
	}
}

// ClearAudio drops the session's queued output audio at once (for interruptions). On the
// telephone route, Twilio is also told to drop what it buffered.
func (s *Session) ClearAudio() {
	if s.audioOut != nil {
		s.audioOut.clear()
	}
}

// QueuedAudio returns how much output audio waits to be sent.
func (s *Session) QueuedAudio() time.Duration {
	if s.audioOut == nil {
		return 0
	}
	return s.audioOut.queued()
}

// startAudio runs the handler's start-up hook and starts the paced output and the Emit loop
// or source. It reports false if the session ended.
func (s *Stream) startAudio(sess *Session) bool {
	if st, ok := sess.handler.(AudioStarter); ok {
		if err := st.Start(sess); err != nil {
			sess.fail(handlerError(err))
			return false
		}
	}
	if out := sess.audioOut; out != nil {
		sess.goFn(func() {
			if err := out.run(sess.ctx); err != nil {
				sess.fail(err)
			}
		})
	}
	switch {
	case s.audio.source != nil:
		sess.goFn(func() { s.runAudioSource(sess, sess.audioOut) })
	case sess.handler != nil:
		out := sess.audioOut
		if out == nil { // send mode: the handler's audio goes nowhere
			out = newAudioOut(48000, 1, func([]int16, bool) error { return nil })
			sess.goFn(func() { _ = out.run(sess.ctx) })
		}
		sess.goFn(func() { s.runAudioEmit(sess, sess.handler, out) })
	}
	return true
}

// textInput is the name of the AudioAgent's text input, or "" (for the page).
func (s *Stream) textInput() string {
	if s.audio == nil {
		return ""
	}
	return s.audio.textInput
}

// pauseDetection reports whether the stream's handler takes turns (AudioAgent.TurnTaking),
// for the page.
func (s *Stream) pauseDetection() bool { return s.audio != nil && s.audio.turnTaking }

// bindSessionHandler makes the session's audio handler (if the stream has one) and its
// layout, and registers the shutdown hook.
// A panic in the factory or in AudioLayout is returned as an error wrapping ErrHandlerPanic.
func (s *Stream) bindSessionHandler(sess *Session) error {
	if s.audio == nil {
		sess.bindHandler(nil, AudioLayout{})
		return nil
	}
	if err := safely(func() error { return s.makeSessionHandler(sess) }); err != nil {
		sess.bindHandler(nil, AudioLayout{}) // no handler: nothing more is kept for it
		return fmt.Errorf("making the session's handler: %w", err)
	}
	return nil
}

func (s *Stream) makeSessionHandler(sess *Session) error {
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
		layout.OutputRate = s.cfg.audio.outputRate
	}
	if layout.OutputChannels == 0 {
		layout.OutputChannels = 1
	}
	for _, r := range []int{layout.InputRate, layout.OutputRate} {
		if r < 8000 || r > 48000 || r%50 != 0 {
			return fmt.Errorf("fastrtc: the handler's AudioLayout has rate %d Hz; want a multiple of 50 in 8000..48000", r)
		}
	}
	if layout.InputChannels > 2 || layout.OutputChannels > 2 || layout.InputChannels < 0 || layout.OutputChannels < 0 {
		return fmt.Errorf("fastrtc: the handler's AudioLayout has %d input and %d output channels; want 1 or 2", layout.InputChannels, layout.OutputChannels)
	}
	sess.bindHandler(h, layout)
	if sd, ok := h.(AudioShutdowner); ok {
		sess.onEnd(func() { sd.Shutdown(sess) })
	}
	return nil
}

// isEOF reports whether a handler's error means a normal end.
func isEOF(err error) bool { return errors.Is(err, io.EOF) }
