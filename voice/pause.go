package voice

import (
	"context"
	"fmt"
	"github.com/fastrtc-go/fastrtc"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/voice/internal/vad"
)

// VAD classifies audio as speech or not: the voice activity detector of ReplyOnPause.
// One VAD serves one session; it is not used concurrently.
type VAD interface {
	// IsSpeech classifies one 20 ms frame of 16 kHz mono audio (320 samples).
	IsSpeech(frame []int16) (bool, error)
	// Close frees the detector.
	Close() error
}

// webrtcVAD is the default VAD: the classic WebRTC VAD (libwebrtc-audio-processing).
type webrtcVAD struct{ v *vad.VAD }

// IsSpeech classifies a 20 ms frame at 16 kHz.
func (w webrtcVAD) IsSpeech(frame []int16) (bool, error) { return w.v.IsSpeech(16000, frame) }

// Close frees the detector.
func (w webrtcVAD) Close() error { return w.v.Close() }

// NewWebRTCVAD returns the WebRTC voice activity detector with aggressiveness mode 0 (least)
// to 3 (most); ReplyOnPause uses mode 3 by default.
func NewWebRTCVAD(mode int) (VAD, error) {
	v, err := vad.New(mode)
	if err != nil {
		return nil, fmt.Errorf("voice: VAD: %w", err)
	}
	return webrtcVAD{v}, nil
}

// ReplyFunc answers one utterance: it gets the user's speech (mono, at the handler's input
// rate, 48000 Hz by default) and yields the reply's audio, at any rate, as fast as it likes
// (yield blocks to pace it). It may call s.Emit for additional outputs, and read s.Inputs.
// ctx is cancelled when the reply is interrupted or the session ends; the reply should stop
// then (yield returns false). Yielding an error ends the session with that error.
type ReplyFunc func(ctx context.Context, s *fastrtc.Session, utterance fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error]

// maxUtterance bounds an utterance's length (and memory) even without
// WithMaxContinuousSpeech: a reply is forced then.
const maxUtterance = 2 * time.Minute

// StartupFunc speaks first, when a connection starts; it works like a ReplyFunc without an
// utterance.
type StartupFunc func(ctx context.Context, s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error]

// Option configures a ReplyOnPause (and ReplyOnStopWords).
type Option func(*pauseConfig)

type pauseConfig struct {
	chunk          time.Duration // audio_chunk_duration
	startThreshold time.Duration // started_talking_threshold
	pauseThreshold time.Duration // speech_threshold
	maxSpeech      time.Duration // max_continuous_speech_s (0: none)
	canInterrupt   bool
	cutInOnStart   bool
	pad            time.Duration
	inputRate      int
	needsInputs    bool
	inputsWait     time.Duration
	startup        StartupFunc
	newVAD         func() (VAD, error) // nil: the WebRTC VAD
	vadName        string              // for the log
	minInterrupt   time.Duration
	textInput      string               // a Text input whose posted value triggers a reply
	gate           *stopWordGate        // ReplyOnStopWords
	partials       StreamingTranscriber // WithPartialTranscripts
}

// WithPartialTranscripts shows the user's words live while they speak: each turn's audio
// goes to t as it comes, and its partial transcripts reach the client
// (Session.PartialTranscript: the data channel, the built-in page) at most every 150 ms of
// audio, with the final one when the turn ends. Partials are best effort: when t has no free
// decoder within 200 ms of a turn's start, that turn has none. The reply still gets the
// whole utterance; a transcriber of its own is unchanged.
func WithPartialTranscripts(t StreamingTranscriber) Option {
	return func(c *pauseConfig) { c.partials = t }
}

// WithPauseChunk sets how much audio is judged at a time (default 0.6 s).
func WithPauseChunk(d time.Duration) Option { return func(c *pauseConfig) { c.chunk = d } }

// WithStartedTalkingThreshold sets how much speech a chunk needs to start a turn (default
// 0.2 s).
func WithStartedTalkingThreshold(d time.Duration) Option {
	return func(c *pauseConfig) { c.startThreshold = d }
}

// WithPauseThreshold sets the speech below which a chunk is a pause (default 0.1 s).
func WithPauseThreshold(d time.Duration) Option {
	return func(c *pauseConfig) { c.pauseThreshold = d }
}

// WithMaxContinuousSpeech makes a reply start after d of continuous speech even without a
// pause (default: no limit).
func WithMaxContinuousSpeech(d time.Duration) Option {
	return func(c *pauseConfig) { c.maxSpeech = d }
}

// WithCanInterrupt sets whether the user's new speech stops a reply and drops its queued
// audio (default true). With false, audio that arrives while a reply plays is ignored.
func WithCanInterrupt(on bool) Option { return func(c *pauseConfig) { c.canInterrupt = on } }

// WithInterruptOnSpeechStart sets when an interruption happens: true (the default) cuts the
// reply as soon as the user starts talking ("started_talking"); false waits, as FastRTC does,
// until the new utterance ends.
func WithInterruptOnSpeechStart(on bool) Option {
	return func(c *pauseConfig) { c.cutInOnStart = on }
}

// WithUtterancePadding sets how much audio around the detected speech an utterance keeps
// (default 0.1 s before the first and after the last speech frame). A negative value keeps
// whole chunks, as FastRTC does.
func WithUtterancePadding(d time.Duration) Option { return func(c *pauseConfig) { c.pad = d } }

// WithPauseInputRate sets the rate of the utterances given to the reply (default 48000).
func WithPauseInputRate(hz int) Option { return func(c *pauseConfig) { c.inputRate = hz } }

// WithReplyInputs makes each reply wait for the client's current additional inputs: the
// client is sent "send_input" and the reply starts once it posted them (or after a second).
func WithReplyInputs() Option {
	return func(c *pauseConfig) { c.needsInputs, c.inputsWait = true, time.Second }
}

// WithStartup speaks first: fn's audio is played when a connection starts.
func WithStartup(fn StartupFunc) Option { return func(c *pauseConfig) { c.startup = fn } }

// WithVAD replaces the voice activity detector; newVAD is called once per session. A VAD
// that implements WindowedVAD is given windows of its own length.
func WithVAD(newVAD func() (VAD, error)) Option {
	return func(c *pauseConfig) { c.newVAD, c.vadName = newVAD, "configured (WithVAD)" }
}

// WithSilero makes the Silero VAD the detector, with the given options (the zero value for
// the defaults). Without it (nor WithVAD), ReplyOnPause uses the WebRTC VAD.
func WithSilero(m *SileroModel, o SileroOptions) Option {
	return func(c *pauseConfig) {
		c.vadName = "Silero VAD"
		c.newVAD = func() (VAD, error) {
			if m == nil {
				return nil, fmt.Errorf("%w: WithSilero: nil model", fastrtc.ErrInvalidConfig)
			}
			return m.NewVAD(o)
		}
	}
}

// WithWebRTCVAD makes the classic WebRTC VAD the detector, at aggressiveness mode 0 (least)
// to 3 (most; the default detector is this at mode 3).
func WithWebRTCVAD(mode int) Option {
	return func(c *pauseConfig) {
		c.newVAD, c.vadName = func() (VAD, error) { return NewWebRTCVAD(mode) }, fmt.Sprintf("WebRTC VAD (mode %d)", mode)
	}
}

// WithTextInput makes the named input (declare it with Text, e.g. fastrtc.Text("textbox",
// "")) a way to talk to the agent by typing: whenever a client posts it non-empty (to
// /input_hook, as FastRTC's send_text_or_audio page does, or with fastrtc.Stream.SetInput), or sends
// text on the data channel (a plain string, or {"type": "text", "data": "..."}), a reply
// starts as if the user had spoken and paused. The reply gets an empty utterance and reads
// the text with ReplyText(ctx); it interrupts a reply in progress (WithCanInterrupt).
func WithTextInput(name string) Option { return func(c *pauseConfig) { c.textInput = name } }

// WithMinInterruption sets how long the user must speak over a reply before it is cut
// (default 300 ms; 0 cuts at the first speech). A shorter sound (a cough, "uh-huh", a click)
// neither stops the reply nor starts a turn. It applies when WithCanInterrupt is on.
func WithMinInterruption(d time.Duration) Option {
	return func(c *pauseConfig) { c.minInterrupt = d }
}

// ReplyOnPause is an audio handler for voice agents (FastRTC's ReplyOnPause): it buffers the
// user's speech and, when they pause, calls a ReplyFunc with the whole utterance and streams
// its audio back. It sends the log messages "started_talking", "pause_detected" and
// "response_starting". Pass it to fastrtc.New for an audio stream (it embeds a
// fastrtc.AudioAgent, which makes it a fastrtc.Handler); each connection gets its own
// per-connection handler.
//
// The algorithm and defaults are FastRTC's: audio is judged in chunks of 0.6 s; a chunk with
// more than 0.2 s of speech starts a turn; once started, a chunk with less than 0.1 s of
// speech is a pause. The VAD runs on 16 kHz audio: the Silero VAD with WithSilero, else the
// WebRTC VAD (mode 3). While a reply plays, the user interrupts it only by speaking for
// WithMinInterruption (300 ms); a shorter sound neither cuts the reply nor starts a turn.
//
// It is built only on the fastrtc package's public hooks, which any handler may use.
//
// A ReplyOnPause is immutable once made and safe for concurrent use; each session's handler
// runs Receive on the audio input goroutine, Emit on the output goroutine and each reply on a
// goroutine of its own.
type ReplyOnPause struct {
	// AudioAgent is what the stream reads of the agent; NewReplyOnPause sets it. Do not
	// change it.
	fastrtc.AudioAgent

	reply ReplyFunc
	cfg   pauseConfig
}

// NewReplyOnPause returns a pause-detecting handler that answers with reply. It panics if
// reply is nil (a programming error).
func NewReplyOnPause(reply ReplyFunc, opts ...Option) *ReplyOnPause {
	if reply == nil {
		panic("voice: NewReplyOnPause: nil reply")
	}
	cfg := pauseConfig{
		chunk: 600 * time.Millisecond, startThreshold: 200 * time.Millisecond,
		pauseThreshold: 100 * time.Millisecond, canInterrupt: true, cutInOnStart: true,
		pad: 100 * time.Millisecond, inputRate: 48000, minInterrupt: 300 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	r := &ReplyOnPause{reply: reply, cfg: cfg}
	newVAD, which := r.detector()
	r.AudioAgent = fastrtc.AudioAgent{
		NewHandler: func() fastrtc.AudioHandler {
			return &pauseHandler{reply: r.reply, cfg: &r.cfg, newVAD: newVAD, out: make(chan genFrame)}
		},
		Check: func(s *fastrtc.Stream) error {
			s.Logger().Info("voice: pause detection", "vad", which)
			return nil
		},
		TextInput:  cfg.textInput,
		TurnTaking: true,
	}
	return r
}

// detector returns how sessions make their VAD: the configured one, else the WebRTC VAD
// (mode 3), and its name for the log.
func (r *ReplyOnPause) detector() (func() (VAD, error), string) {
	if r.cfg.newVAD != nil {
		return r.cfg.newVAD, r.cfg.vadName
	}
	return func() (VAD, error) { return NewWebRTCVAD(3) }, "WebRTC VAD"
}

// genFrame is a reply's audio frame, tagged with the reply it belongs to.
type genFrame struct {
	f   fastrtc.AudioFrame
	gen int
}

// pauseHandler is ReplyOnPause's per-connection state. Receive runs on the audio input
// goroutine, Emit on the output goroutine, replies on their own; mu guards what they share.
type pauseHandler struct {
	reply  ReplyFunc
	cfg    *pauseConfig
	newVAD func() (VAD, error)
	sess   *fastrtc.Session
	vad    VAD
	res    *resample.Resampler // input rate -> 16 kHz
	out    chan genFrame

	mu          sync.Mutex
	pausedAt    time.Time // when the pause that started reply pausedGen was detected
	pausedGen   int
	turn        *turnDetector
	v16         []int16            // scratch: the last frame at 16 kHz
	chunk       []int16            // the current chunk at the input rate
	prev        []int16            // the last chunk dropped outside a turn (a turn may adopt it)
	utter       []int16            // the turn so far (whole chunks, input rate)
	pendingText string             // text posted before Start
	lastText    string             // the text last answered
	lastTextAt  time.Time          // when it was
	laterText   string             // text posted within textReplyGap of the last, answered after it
	awaiting    int                // replies waiting for the client's answer to send_input
	gateMu      sync.Mutex         // serialises stop-word transcriptions
	armed       atomic.Bool        // ReplyOnStopWords: the stop word was heard, the next turn is answered
	gen         int                // current reply generation
	cancel      context.CancelFunc // cancels the current reply
	responding  bool
	inTurn      bool            // a turn is in progress (partial transcripts)
	partial     chan partialMsg // to the partial-transcript worker (WithPartialTranscripts)
}

// partialMsg is the partial-transcript worker's input: a turn's start (with the audio so
// far), its audio, its end, or its cancellation.
type partialMsg struct {
	kind    partialKind
	samples []int16
}

type partialKind int

const (
	partialStart partialKind = iota
	partialAudio
	partialEnd
	partialCancel
)

// sendPartial hands m to the worker without blocking (a full queue drops it: partials are
// best effort).
func (h *pauseHandler) sendPartial(m partialMsg) {
	if h.partial == nil {
		return
	}
	select {
	case h.partial <- m:
	default:
	}
}

// runPartials transcribes turns as they are spoken and sends their partials.
func (h *pauseHandler) runPartials(s *fastrtc.Session, t StreamingTranscriber) {
	var st TranscriptionStream
	var last string
	since := 0 // samples written since the last partial sent: partials at most every 150 ms of audio
	every := h.cfg.inputRate * 150 / 1000
	closeStream := func() string {
		if st == nil {
			return ""
		}
		text, _ := st.Close()
		st = nil
		return text
	}
	defer closeStream()
	for {
		var m partialMsg
		select {
		case m = <-h.partial:
		case <-s.Context().Done():
			return
		}
		switch m.kind {
		case partialStart:
			closeStream()
			last, since = "", 0
			ctx, cancel := context.WithTimeout(s.Context(), 200*time.Millisecond)
			var err error
			st, err = t.StartTranscription(ctx, h.cfg.inputRate)
			cancel()
			if err != nil {
				st = nil
				s.Logger().Debug("voice: no partial transcripts for this turn", "err", err)
				continue
			}
			fallthrough
		case partialAudio:
			if st == nil {
				continue
			}
			text, err := st.Write(m.samples)
			if err != nil {
				s.Logger().Debug("voice: partial transcript", "err", err)
				closeStream()
				continue
			}
			since += len(m.samples)
			if text != last && (last == "" || since >= every) {
				last, since = text, 0
				_ = s.PartialTranscript(fastrtc.RoleUser, text, false)
			}
		case partialEnd:
			if st == nil {
				continue
			}
			text := closeStream()
			_ = s.PartialTranscript(fastrtc.RoleUser, text, true)
			last = ""
		case partialCancel:
			if st != nil {
				closeStream()
				_ = s.PartialTranscript(fastrtc.RoleUser, "", true)
			}
			last = ""
		}
	}
}

// AudioLayout asks for mono input at the configured rate.
func (h *pauseHandler) AudioLayout() fastrtc.AudioLayout {
	return fastrtc.AudioLayout{InputRate: h.cfg.inputRate, InputChannels: 1}
}

// Start creates the VAD and speaks the start-up reply, if any.
func (h *pauseHandler) Start(s *fastrtc.Session) error {
	v, err := h.newVAD()
	if err != nil {
		return err
	}
	res, err := resample.New(h.cfg.inputRate, 16000, 1)
	if err != nil {
		_ = v.Close()
		return fmt.Errorf("voice: pause detection: %w", err)
	}
	h.mu.Lock()
	h.sess, h.vad, h.res, h.turn = s, v, res, newTurnDetector(h.cfg, v)
	pending := h.pendingText
	h.pendingText = ""
	h.mu.Unlock()
	s.CloseOnEnd(v)
	if t := h.cfg.partials; t != nil {
		h.mu.Lock()
		h.partial = make(chan partialMsg, 256)
		h.mu.Unlock()
		s.Go(func() { h.runPartials(s, t) })
	}
	if h.cfg.startup != nil {
		start := h.cfg.startup
		h.startReply(func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error] { return start(ctx, s) }, false, nil)
	}
	if pending != "" { // text posted before the start: answered now, as later text is (over the greeting)
		h.mu.Lock()
		h.textReplyLocked(s, pending)
		h.mu.Unlock()
	}
	return nil
}

// Receive runs pause detection on the user's audio.
func (h *pauseHandler) Receive(s *fastrtc.Session, f fastrtc.AudioFrame) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.vad == nil {
		return nil
	}
	if !h.cfg.canInterrupt && (h.responding || s.QueuedAudio() > 0) {
		h.resetTurn() // FastRTC ignores the user while it speaks
		return nil
	}
	h.chunk = append(h.chunk, f.Samples...)
	h.v16 = h.res.Process(h.v16[:0], f.Samples)
	audible := h.responding || s.QueuedAudio() > 0
	if h.inTurn {
		h.sendPartial(partialMsg{kind: partialAudio, samples: append([]int16(nil), f.Samples...)})
	}
	return h.turn.process(h.v16, audible, func(ev turnEvent) {
		switch ev {
		case turnStarted:
			_ = s.Log(fastrtc.LogStartedTalking)
			if h.partial != nil {
				h.inTurn = true
				h.sendPartial(partialMsg{kind: partialStart, samples: append(append([]int16(nil), h.prev...), h.chunk...)})
			}
			if h.cfg.canInterrupt && h.cfg.cutInOnStart && !h.unaddressed() {
				h.interruptLocked()
			}
		case turnChunkKeep:
			h.utter = append(h.utter, h.chunk...)
			h.chunk = h.chunk[:0]
		case turnChunkDrop:
			h.prev, h.chunk = h.chunk, h.prev[:0]
		case turnAdopt:
			h.utter = append(h.utter, h.prev...)
		case turnPause:
			_ = s.Log(fastrtc.LogPauseDetected)
			if h.inTurn {
				h.inTurn = false
				h.sendPartial(partialMsg{kind: partialEnd})
			}
			h.replyLocked()
		}
	})
}

// resetTurn forgets the current turn's audio.
func (h *pauseHandler) resetTurn() {
	if h.inTurn {
		h.inTurn = false
		h.sendPartial(partialMsg{kind: partialCancel})
	}
	h.chunk, h.utter = h.chunk[:0], nil
	h.turn.resetTurn()
}

// utteranceLocked returns the current turn's audio, trimmed to the speech plus padding.
func (h *pauseHandler) utteranceLocked() fastrtc.AudioFrame {
	audio := append(h.utter, h.chunk...)
	if d := h.turn; h.cfg.pad >= 0 && d.first >= 0 {
		rate := h.cfg.inputRate
		pad16 := int(h.cfg.pad * 16000 / time.Second)
		start := max(0, (d.first-pad16)*rate/16000)
		end := min(len(audio), (d.last+pad16)*rate/16000)
		if start < end {
			audio = audio[start:end]
		}
	}
	return fastrtc.AudioFrame{SampleRate: h.cfg.inputRate, Channels: 1, Samples: append([]int16(nil), audio...)}
}

// unaddressed reports whether the agent answers only turns that hold its stop phrase
// (ReplyOnStopWords) and has not heard it: speech then does not cut a reply by itself.
func (h *pauseHandler) unaddressed() bool { return h.cfg.gate != nil && !h.armed.Load() }

// replyLocked ends the turn and starts the reply to it.
func (h *pauseHandler) replyLocked() {
	paused := time.Now()
	utt := h.utteranceLocked()
	h.resetTurn()
	if h.unaddressed() && (h.responding || h.sess.QueuedAudio() > 0) {
		h.admitOverReplyLocked(utt, paused)
		return
	}
	if h.cfg.canInterrupt {
		h.interruptLocked()
	}
	s := h.sess
	var prepare func(ctx context.Context) (context.Context, bool, error)
	if g := h.cfg.gate; g != nil {
		prepare = func(ctx context.Context) (context.Context, bool, error) {
			h.gateMu.Lock()
			defer h.gateMu.Unlock()
			return g.admit(ctx, s, utt, &h.armed)
		}
	}
	h.startReplyLocked(func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error] { return h.reply(ctx, s, utt) }, true, prepare)
	h.pausedAt, h.pausedGen = paused, h.gen // Emit times this reply's first frame
}

// admitOverReplyLocked handles a ReplyOnStopWords turn that came while a reply plays and
// before the stop phrase was heard (a bystander, the user talking to someone else): it is
// transcribed aside, the reply playing on; only a turn that holds the phrase then cuts the
// reply and is answered (FastRTC's ReplyOnStopWords does not hear a pause before the phrase).
func (h *pauseHandler) admitOverReplyLocked(utt fastrtc.AudioFrame, paused time.Time) {
	s, g := h.sess, h.cfg.gate
	s.Go(func() {
		h.gateMu.Lock()
		actx, ok, err := g.admit(s.Context(), s, utt, &h.armed)
		h.gateMu.Unlock()
		if err != nil {
			if s.Context().Err() == nil {
				s.Fail(err)
			}
			return
		}
		if !ok {
			return // not addressed (or the phrase alone: armed, the next turn cuts in)
		}
		transcript := ReplyTranscript(actx)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.interruptLocked()
		h.startReplyLocked(func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error] {
			return h.reply(context.WithValue(ctx, replyTranscriptKey{}, transcript), s, utt)
		}, true, nil)
		h.pausedAt, h.pausedGen = paused, h.gen
	})
}

// InputsPosted starts a text reply when the text input was posted non-empty.
func (h *pauseHandler) InputsPosted(s *fastrtc.Session, names []string) {
	name := h.cfg.textInput
	if name == "" || !slices.Contains(names, name) {
		return
	}
	text := s.Inputs().Text(name)
	if strings.TrimSpace(text) == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.awaiting > 0 && text == h.lastText {
		// A page answering send_input posts all its inputs, the text box unchanged: that
		// answers the reply waiting for them, it does not ask again (which would loop).
		return
	}
	if h.vad == nil {
		h.pendingText = text // posted before the session started: answered by Start
		return
	}
	if wait := textReplyGap - time.Since(h.lastTextAt); wait > 0 {
		// Texts faster than one per textReplyGap: the latest is answered when the gap is
		// over (each would cut the one before anyway), so a client cannot start replies,
		// and the model calls behind them, as fast as it can post.
		if h.laterText == "" {
			s.Go(func() {
				select {
				case <-time.After(wait):
				case <-s.Context().Done():
					return
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				if t := h.laterText; t != "" {
					h.laterText = ""
					h.textReplyLocked(s, t)
				}
			})
		}
		h.laterText = text
		return
	}
	h.textReplyLocked(s, text)
}

// textReplyGap is the least time between two replies to posted text.
const textReplyGap = 250 * time.Millisecond

// textReplyLocked starts a reply to typed text.
func (h *pauseHandler) textReplyLocked(s *fastrtc.Session, text string) {
	h.lastText, h.lastTextAt = text, time.Now()
	if h.cfg.canInterrupt {
		h.interruptLocked()
	}
	h.resetTurn()
	empty := fastrtc.AudioFrame{SampleRate: h.cfg.inputRate, Channels: 1}
	h.startReplyLocked(func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error] {
		return h.reply(context.WithValue(ctx, replyTextKey{}, text), s, empty)
	}, true, nil)
}

// ReceiveText takes text the client sent on the data channel: with a text input, it is
// posted to it (and so answered).
func (h *pauseHandler) ReceiveText(s *fastrtc.Session, text string) {
	if h.cfg.textInput == "" {
		return
	}
	if err := s.SetInputs(map[string]any{h.cfg.textInput: text}); err != nil {
		_ = s.Warn("text input: " + err.Error())
	}
}

// interruptLocked stops the current reply and drops its queued audio.
func (h *pauseHandler) interruptLocked() {
	if h.cancel != nil {
		h.cancel()
		h.cancel = nil
	}
	h.gen++
	h.responding = false
	h.sess.ClearAudio()
}

func (h *pauseHandler) startReply(gen func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error], announce bool,
	prepare func(context.Context) (context.Context, bool, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startReplyLocked(gen, announce, prepare)
}

// startReplyLocked runs a reply generator on its own goroutine, feeding Emit. prepare, if
// set, runs first on that goroutine and may veto the reply (stop words) or give it a context.
func (h *pauseHandler) startReplyLocked(gen func(ctx context.Context) iter.Seq2[fastrtc.AudioFrame, error], announce bool,
	prepare func(context.Context) (context.Context, bool, error)) {
	s := h.sess
	if h.cancel != nil { // never leave a reply running unseen (it may be calling a model)
		h.cancel()
	}
	ctx, cancel := context.WithCancel(s.Context())
	h.gen++
	id := h.gen
	h.cancel, h.responding = cancel, true
	s.Go(func() {
		defer func() {
			cancel()
			h.mu.Lock()
			if h.gen == id {
				h.responding, h.cancel = false, nil
			}
			h.mu.Unlock()
		}()
		if prepare != nil {
			pctx, ok, err := prepare(ctx)
			if err != nil && ctx.Err() == nil {
				s.Fail(err)
				return
			}
			if !ok || ctx.Err() != nil {
				return
			}
			ctx = pctx
		}
		if announce && h.cfg.needsInputs {
			h.mu.Lock()
			h.awaiting++
			h.mu.Unlock()
			h.awaitInputs(ctx)
			h.mu.Lock()
			h.awaiting--
			h.mu.Unlock()
		}
		if announce {
			_ = s.Log(fastrtc.LogResponseStarting)
		}
		for f, err := range gen(ctx) {
			if err != nil {
				if ctx.Err() == nil {
					s.Fail(fmt.Errorf("handler: %w", err))
				}
				return
			}
			select {
			case h.out <- genFrame{f, id}:
			case <-ctx.Done():
				return
			}
		}
	})
}

// awaitInputs asks the client for its inputs and waits (briefly) until they arrive.
func (h *pauseHandler) awaitInputs(ctx context.Context) {
	s := h.sess
	ch := s.InputsChanged()
	_ = s.RequestInputs()
	t := time.NewTimer(h.cfg.inputsWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

// Emit passes on the current reply's audio.
func (h *pauseHandler) Emit(ctx context.Context, s *fastrtc.Session) (fastrtc.AudioFrame, error) {
	for {
		select {
		case gf := <-h.out:
			h.mu.Lock()
			stale := gf.gen != h.gen
			var paused time.Time
			if !stale && gf.gen == h.pausedGen {
				paused, h.pausedAt, h.pausedGen = h.pausedAt, time.Time{}, 0
			}
			h.mu.Unlock()
			if !stale {
				if !paused.IsZero() {
					s.ReplyStarted(paused)
				}
				return gf.f, nil
			}
		case <-ctx.Done():
			return fastrtc.AudioFrame{}, ctx.Err()
		}
	}
}

// TriggerReply replies now to whatever the user said so far (fastrtc.ReplyTrigger).
func (h *pauseHandler) TriggerReply(*fastrtc.Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.vad == nil {
		return fmt.Errorf("voice: trigger reply: session not started")
	}
	h.turn.absorbChunk()
	h.replyLocked()
	return nil
}
