package realtime

import (
	"fmt"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/voice"
)

// Turns detects the user's turns in the bridge, with a VAD of package voice (the Silero VAD
// from SileroModel.NewVAD, or the WebRTC VAD), for a bridge whose user chose local turn
// detection over the model's server VAD. A turn starts when 300 ms of the last 400 ms are
// speech and ends after 600 ms without speech. Not safe for concurrent use: the session's
// audio input goroutine feeds it.
type Turns struct {
	vad      voice.VAD
	res      *resample.Resampler
	buf      []int16
	window   [20]bool // the last 20 frames (400 ms): speech or not
	pos, n   int
	speaking bool
	quiet    int
}

// NewTurns makes a detector for mono audio at rate Hz on v (Turns closes it).
func NewTurns(v voice.VAD, rate int) (*Turns, error) {
	t := &Turns{vad: v}
	if rate != 16000 {
		r, err := resample.New(rate, 16000, 1)
		if err != nil {
			return nil, fmt.Errorf("realtime: turns: %w", err)
		}
		t.res = r
	}
	return t, nil
}

// Feed adds audio and calls started when the user starts a turn and ended when they end it.
func (t *Turns) Feed(samples []int16, started, ended func()) error {
	if t.res != nil {
		t.buf = t.res.Process(t.buf, samples)
	} else {
		t.buf = append(t.buf, samples...)
	}
	for len(t.buf) >= 320 {
		speech, err := t.vad.IsSpeech(t.buf[:320])
		if err != nil {
			return fmt.Errorf("realtime: VAD: %w", err)
		}
		t.buf = t.buf[:copy(t.buf, t.buf[320:])]
		if t.window[t.pos] {
			t.n--
		}
		t.window[t.pos] = speech
		if speech {
			t.n++
		}
		t.pos = (t.pos + 1) % len(t.window)
		switch {
		case !t.speaking && t.n >= 15:
			t.speaking, t.quiet = true, 0
			started()
		case t.speaking && speech:
			t.quiet = 0
		case t.speaking:
			t.quiet++
			if t.quiet >= 30 {
				t.speaking = false
				ended()
			}
		}
	}
	return nil
}

// StartTurns makes the detector of session s for audio at rate Hz from newVAD (nil: no
// local detection, nil Turns); the session closes it when it ends.
func StartTurns(s *fastrtc.Session, newVAD func() (voice.VAD, error), rate int) (*Turns, error) {
	if newVAD == nil {
		return nil, nil
	}
	v, err := newVAD()
	if err != nil {
		return nil, fmt.Errorf("realtime: local VAD: %w", err)
	}
	t, err := NewTurns(v, rate)
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	s.CloseOnEnd(t)
	return t, nil
}

// Close frees the VAD.
func (t *Turns) Close() error { return t.vad.Close() }
