package realtime

import (
	"context"
	"sync"
	"time"

	"github.com/fastrtc-go/fastrtc"
)

// Player holds a model's reply audio for one session and knows how much of each reply the
// user heard. Models send audio faster than real time; the bridge's reader Pushes it as it
// comes (never blocking), the session's Emit takes it with Next, and the session paces it
// out. On barge-in, Interrupt drops what was not sent and says how much of the current
// reply item went out: the session's count of audio sent, not what the model generated.
//
// A Player is safe for concurrent use.
type Player struct {
	s    *fastrtc.Session
	rate int

	mu        sync.Mutex
	q         []chunk
	notify    chan struct{} // cap 1: audio was pushed
	handed    time.Duration // audio Next handed to the session
	item      string        // the item Next handed last
	itemStart time.Duration // handed when that item's first audio was handed
	generated map[string]time.Duration
	base      time.Duration // the session's audio sent when the player was made
	dropped   map[string]bool
	pausedAt  time.Time // when the user's turn last ended (Paused)
}

type chunk struct {
	item    string
	samples []int16
}

// NewPlayer makes the player of session s for mono audio at rate (Hz). When an item's first
// audio is handed to the session, the player logs fastrtc.LogResponseStarting and records
// the turn's latency (Session.ReplyStarted) from the time given to Paused.
func NewPlayer(s *fastrtc.Session, rate int) *Player {
	return &Player{
		s: s, rate: rate, notify: make(chan struct{}, 1), generated: map[string]time.Duration{},
		dropped: map[string]bool{}, base: s.Stats().AudioOut,
	}
}

func (p *Player) dur(n int) time.Duration {
	return time.Duration(n) * time.Second / time.Duration(p.rate)
}

// Push queues audio of reply item (samples are kept). Audio of an item that was interrupted
// is dropped.
func (p *Player) Push(item string, samples []int16) {
	if len(samples) == 0 {
		return
	}
	p.mu.Lock()
	if p.dropped[item] {
		p.mu.Unlock()
		return
	}
	p.q = append(p.q, chunk{item, samples})
	p.generated[item] += p.dur(len(samples))
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Next returns the next queued audio, waiting for it until ctx is done: an AudioHandler's
// Emit.
func (p *Player) Next(ctx context.Context) (fastrtc.AudioFrame, error) {
	for {
		p.mu.Lock()
		if len(p.q) > 0 {
			c := p.q[0]
			p.q[0] = chunk{}
			p.q = p.q[1:]
			first := c.item != p.item
			if first {
				p.item, p.itemStart = c.item, p.handed
			}
			p.handed += p.dur(len(c.samples))
			pausedAt := p.pausedAt
			p.mu.Unlock()
			if first {
				if !pausedAt.IsZero() {
					p.s.ReplyStarted(pausedAt)
				}
				_ = p.s.Log(fastrtc.LogResponseStarting)
			}
			return fastrtc.AudioFrame{SampleRate: p.rate, Channels: 1, Samples: c.samples}, nil
		}
		p.mu.Unlock()
		select {
		case <-p.notify:
		case <-ctx.Done():
			return fastrtc.AudioFrame{}, ctx.Err()
		}
	}
}

// Paused records that the user's turn ended now (the model's VAD, the local one, or typed
// text): the next reply's first audio measures the turn's latency from it.
func (p *Player) Paused() {
	p.mu.Lock()
	p.pausedAt = time.Now()
	p.mu.Unlock()
}

// Interrupt drops the queued audio (the player's and the session's) and returns the item
// that was playing, how much of it was sent to the user (played), and how much of it the
// model generated so far. Further audio of that item is dropped. item is "" when nothing
// was played yet.
func (p *Player) Interrupt() (item string, played, generated time.Duration) {
	p.mu.Lock()
	for _, c := range p.q {
		p.dropped[c.item] = true
	}
	p.q = nil
	item, start, handed := p.item, p.itemStart, p.handed
	if item != "" {
		p.dropped[item] = true
	}
	p.mu.Unlock()
	p.s.ClearAudio()
	if item == "" {
		return "", 0, 0
	}
	sent := p.s.Stats().AudioOut - p.base
	played = min(max(sent-start, 0), handed-start)
	p.mu.Lock()
	generated = p.generated[item]
	p.mu.Unlock()
	return item, played, generated
}

// Playing reports whether audio of the model waits to be sent or is being sent (the
// session's queue holds some).
func (p *Player) Playing() bool {
	p.mu.Lock()
	n := len(p.q)
	p.mu.Unlock()
	return n > 0 || p.s.QueuedAudio() > 0
}
