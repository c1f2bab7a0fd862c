package voice

import (
	"fmt"
	"time"
)

// WindowedVAD is a VAD that classifies windows of another length than 20 ms: IsSpeech is
// given WindowSamples samples of 16 kHz audio at a time. The Silero VAD is one (512 samples).
type WindowedVAD interface {
	VAD
	// WindowSamples is the number of 16 kHz samples per IsSpeech call.
	WindowSamples() int
}

// runVAD is implemented by VADs that confirm speech runs after the fact (Silero's minimum
// speech): it returns how many windows just became speech, possibly earlier ones too.
type runVAD interface {
	speechWindows(frame []int16) (int, error)
}

// turnEvent is a decision of the turn detector.
type turnEvent int

const (
	turnStarted   turnEvent = iota + 1 // the user started a turn ("started_talking")
	turnChunkKeep                      // a chunk ended and belongs to the turn
	turnChunkDrop                      // a chunk ended outside any turn
	turnPause                          // the turn ended ("pause_detected")
	turnAdopt                          // the turn began in the last dropped chunk: keep it (comes before turnStarted)
)

// bargeGap is how long the user's speech may break off and still count as one
// interruption attempt.
const bargeGap = 200 * time.Millisecond

// turnDetector is ReplyOnPause's decision logic over 16 kHz audio, with no I/O: the VAD runs
// on windows, speech is counted per chunk (FastRTC's algorithm: a chunk with more than the
// started-talking threshold of speech starts a turn; once started, a chunk with less than the
// pause threshold of speech ends it), and while a reply is audible a turn starts only when the
// user's speech lasted the minimum interruption. It is not safe for concurrent use.
type turnDetector struct {
	cfg     *pauseConfig
	vad     VAD
	runs    runVAD // vad, if it confirms runs
	win     int    // samples per VAD window
	pending []int16

	chunkLen, chunkSpeech int // 16 kHz samples in the current chunk, and of speech
	chunkFirst, chunkLast int // speech span in the chunk (position since the turn began), first -1 if none
	utterLen              int // 16 kHz samples of the turn before the current chunk
	first, last           int // speech span of the turn, first -1 if none
	started               bool
	bargeRun, bargeGap    int // interruption attempt: speech and trailing non-speech, in samples

	// recent is the speech of the last chunk's length of windows (a ring), so that a turn
	// starts as soon as that much audio holds the started-talking threshold of speech, even
	// across a chunk boundary.
	recent              []int
	recentAt, recentSum int
	// prev is the last chunk dropped outside a turn: a turn that starts adopts it, so the
	// utterance keeps its first words.
	prevLen, prevFirst, prevLast int
}

func newTurnDetector(cfg *pauseConfig, v VAD) *turnDetector {
	d := &turnDetector{cfg: cfg, vad: v, win: 320, chunkFirst: -1, first: -1, prevFirst: -1}
	if w, ok := v.(WindowedVAD); ok && w.WindowSamples() > 0 {
		d.win = w.WindowSamples()
	}
	d.runs, _ = v.(runVAD)
	d.recent = make([]int, max(1, int((cfg.chunk*16000/time.Second+time.Duration(d.win)-1)/time.Duration(d.win))))
	return d
}

// process classifies new 16 kHz audio; audible says a reply is playing. on gets the decisions
// in order.
func (d *turnDetector) process(pcm []int16, audible bool, on func(turnEvent)) error {
	d.pending = append(d.pending, pcm...)
	buf := d.pending // on may reset the turn; the audio not yet judged stays
	i := 0
	for ; i+d.win <= len(buf); i += d.win {
		frame := buf[i : i+d.win]
		n := 0
		if d.runs != nil {
			var err error
			if n, err = d.runs.speechWindows(frame); err != nil {
				return err
			}
		} else {
			speech, err := d.vad.IsSpeech(frame)
			if err != nil {
				return fmt.Errorf("voice: VAD: %w", err)
			}
			if speech {
				n = 1
			}
		}
		end := d.utterLen + d.chunkLen + d.win // position after this window
		if n > 0 {
			start := max(0, end-n*d.win)
			if d.chunkFirst < 0 {
				d.chunkFirst = start
			}
			d.chunkLast = end
			d.chunkSpeech += n * d.win
		}
		d.chunkLen += d.win
		d.recentSum += n*d.win - d.recent[d.recentAt]
		d.recent[d.recentAt] = n * d.win
		d.recentAt = (d.recentAt + 1) % len(d.recent)
		switch {
		case d.started:
			d.bargeRun, d.bargeGap = 0, 0
		case audible:
			d.barge(n, on)
		case samplesDur(d.recentSum) > d.cfg.startThreshold:
			d.start(on)
		}
		if samplesDur(d.chunkLen) >= d.cfg.chunk {
			d.endChunk(on)
		}
	}
	d.pending = append(d.pending[:0], buf[i:]...)
	return nil
}

// barge applies the minimum interruption while a reply plays: n windows just became speech.
func (d *turnDetector) barge(n int, on func(turnEvent)) {
	if n > 0 {
		d.bargeRun += n * d.win
		d.bargeGap = 0
	} else if d.bargeRun > 0 {
		d.bargeGap += d.win
		if samplesDur(d.bargeGap) > bargeGap {
			d.bargeRun, d.bargeGap = 0, 0
		}
	}
	if d.bargeRun > 0 && samplesDur(d.bargeRun) >= d.cfg.minInterrupt {
		d.start(on)
	}
}

// start begins a turn, adopting the last dropped chunk if it held speech.
func (d *turnDetector) start(on func(turnEvent)) {
	d.started = true
	d.bargeRun, d.bargeGap = 0, 0
	if d.prevFirst >= 0 {
		if d.chunkFirst >= 0 {
			d.chunkFirst += d.prevLen
			d.chunkLast += d.prevLen
		}
		d.utterLen, d.first, d.last = d.prevLen, d.prevFirst, d.prevLast
		d.prevFirst = -1
		on(turnAdopt)
	}
	on(turnStarted)
}

// endChunk judges a complete chunk: outside a turn it is dropped (and kept as prev); in a
// turn, less than the pause threshold of speech ends the turn.
func (d *turnDetector) endChunk(on func(turnEvent)) {
	if !d.started {
		d.prevLen, d.prevFirst, d.prevLast = d.chunkLen, d.chunkFirst, d.chunkLast
		d.resetChunk()
		on(turnChunkDrop)
		return
	}
	speech := samplesDur(d.chunkSpeech)
	d.utterLen += d.chunkLen
	if d.chunkFirst >= 0 {
		if d.first < 0 {
			d.first = d.chunkFirst
		}
		d.last = d.chunkLast
	}
	long := samplesDur(d.utterLen)
	pause := speech < d.cfg.pauseThreshold || d.cfg.maxSpeech > 0 && long >= d.cfg.maxSpeech || long >= maxUtterance
	d.resetChunk()
	on(turnChunkKeep)
	if pause {
		on(turnPause)
	}
}

// absorbChunk ends the current chunk early as part of the turn (TriggerReply).
func (d *turnDetector) absorbChunk() {
	d.utterLen += d.chunkLen
	if d.chunkFirst >= 0 {
		if d.first < 0 {
			d.first = d.chunkFirst
		}
		d.last = d.chunkLast
	}
	d.resetChunk()
}

func (d *turnDetector) resetChunk() { d.chunkLen, d.chunkSpeech, d.chunkFirst = 0, 0, -1 }

// resetTurn forgets the turn.
func (d *turnDetector) resetTurn() {
	d.resetChunk()
	d.utterLen, d.first, d.last, d.started = 0, -1, 0, false
	d.bargeRun, d.bargeGap = 0, 0
	d.prevFirst = -1
	clear(d.recent)
	d.recentSum = 0
}

func samplesDur(n int) time.Duration { return time.Duration(n) * time.Second / 16000 }
