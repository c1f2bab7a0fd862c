package fastrtc

import (
	"context"
	"fmt"
	"image"
	"iter"
	"slices"
)

// Handler is the code a Stream runs for each connection. It is a closed set: only the
// handler types of this package implement it, so passing anything else to New fails to
// compile. Which one a Stream takes depends on its modality and mode:
//
//	modality     send-receive / send                           receive
//	video        VideoFunc                                     VideoSource
//	audio        AudioHandlerFactory, AudioFunc, *AudioAgent   AudioSource
//	audio-video  AudioVideoHandlerFactory                      (not supported)
//
// New rejects any other combination with an error that says what is allowed. In send mode a
// handler's media output is ignored (it produces only additional outputs).
//
// To write a handler of your own kind (another turn-taking policy, say), implement
// AudioHandler and pass an AudioHandlerFactory, or an AudioAgent when the stream must know
// more of it (a text input to check, the built-in page's voice settings). Package voice's
// ReplyOnPause is built that way, on nothing but the public hooks: Session.Go, Fail,
// InputsChanged, SetInputs, ClearAudio, QueuedAudio, Log, Logger, CloseOnEnd, ReplyStarted,
// the optional InputReceiver and TextReceiver interfaces, and ReplyTrigger (which answers
// Session.TriggerReply).
type Handler interface {
	// bind checks the handler against the stream's modality and mode and installs it.
	bind(s *Stream) error
}

// Compile-time checks that every handler type is a Handler.
var (
	_ Handler = VideoFunc(nil)
	_ Handler = AudioFunc(nil)
	_ Handler = VideoSource(nil)
	_ Handler = AudioHandlerFactory(nil)
	_ Handler = AudioSource(nil)
	_ Handler = AudioVideoHandlerFactory(nil)
	_ Handler = (*AudioAgent)(nil)
)

// errNilHandler is the error of a nil handler of a handler type.
var errNilHandler = fmt.Errorf("%w: handler is nil", ErrInvalidConfig)

// wrongHandler is the error of a handler that does not fit the stream.
func wrongHandler(s *Stream, h Handler) error {
	want := map[Modality][2]string{
		Video:      {"VideoFunc", "VideoSource"},
		Audio:      {"AudioHandlerFactory, AudioFunc or *AudioAgent (voice.ReplyOnPause)", "AudioSource"},
		AudioVideo: {"AudioVideoHandlerFactory", ""},
	}[s.modality]
	allowed := want[0]
	if s.mode == Receive {
		allowed = want[1]
	}
	if allowed == "" {
		return fmt.Errorf("%w: an audio-video stream supports send-receive and send modes, not receive", ErrInvalidConfig)
	}
	return fmt.Errorf("%w: a %s stream in %s mode needs a %s handler, got %T", ErrInvalidConfig, s.modality, s.mode, allowed, h)
}

// VideoFunc processes one video frame of a connection and returns the frame to send back.
//
// It is called on the session's video goroutine, one frame at a time, never concurrently for
// one session; different sessions run concurrently. frame and its image are valid only until
// VideoFunc returns. The returned image is encoded before the next call; it may be any
// image.Image (a 4:2:0 *image.YCbCr is encoded without conversion) and may be frame's own
// image. Returning a nil image sends nothing for this frame (in send mode the result is always
// ignored). Returning an error ends this session only: its client gets an "error" message.
type VideoFunc func(s *Session, frame *VideoFrame) (image.Image, error)

func (f VideoFunc) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != Video || s.mode == Receive {
		return wrongHandler(s, f)
	}
	s.videoFn = f
	return nil
}

// VideoSource generates the video of a receive-mode connection. The Stream pulls frames from
// the returned sequence and paces them at the stream's frame rate (WithFPS, default 30): the
// sequence's yield blocks until the frame was encoded and its slot in time has come, so a
// generator never needs to sleep. Yielding a non-nil error ends the session with that error;
// the session ends normally when the sequence ends. The sequence should return when
// s.Context() is done; yield returns false then.
type VideoSource func(s *Session) iter.Seq2[image.Image, error]

func (f VideoSource) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != Video || s.mode != Receive {
		return wrongHandler(s, f)
	}
	s.videoSrc = f
	return nil
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
// concurrently with each other. A panic in either ends the session with ErrHandlerPanic.
//
// A handler may also implement AudioStarter, AudioShutdowner, AudioLayouter, DTMFReceiver,
// InputReceiver, TextReceiver and ReplyTrigger.
type AudioHandler interface {
	Receive(s *Session, frame AudioFrame) error
	Emit(ctx context.Context, s *Session) (AudioFrame, error)
}

// AudioHandlerFactory makes the AudioHandler of a new connection. It is called on the
// goroutine that opens the session (an HTTP handler's); a panic refuses that connection only.
type AudioHandlerFactory func() AudioHandler

func (f AudioHandlerFactory) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != Audio || s.mode == Receive {
		return wrongHandler(s, f)
	}
	s.audio = &audioConfig{factory: f}
	return nil
}

// AudioStarter is implemented by handlers with a start-up hook, called once the connection is
// up, before the first Receive. Returning an error ends the session with it.
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

// AudioLayouter is implemented by handlers that declare their audio formats. AudioLayout is
// called once per session, right after the factory.
type AudioLayouter interface {
	AudioLayout() AudioLayout
}

// DTMFReceiver is implemented by audio handlers that want the keypad digits a telephone
// caller presses (Twilio "dtmf" events). DTMF is called on the session's reader goroutine,
// never concurrently with Receive; it should return quickly. A panic ends the session.
type DTMFReceiver interface {
	DTMF(s *Session, digit string)
}

// ReplyTrigger is implemented by turn-taking handlers (voice.ReplyOnPause's per-connection
// handler among them) that can be told to reply now; Session.TriggerReply calls it. It may
// be called from any goroutine.
type ReplyTrigger interface {
	TriggerReply(s *Session) error
}

// InputReceiver is implemented by audio handlers that react to posted inputs (POST
// /input_hook, Stream.SetInput, Session.SetInputs): InputsPosted is called after each change
// with the names posted, sorted, on the goroutine that posted them; it must not block (start
// work with Session.Go). Inputs posted before the handler was made are delivered right
// after the factory returns. Unlike WithOnInput, which serves every session of a stream, it
// belongs to the session's own handler.
type InputReceiver interface {
	InputsPosted(s *Session, names []string)
}

// TextReceiver is implemented by audio handlers that take text the client sends on the data
// channel: a plain string, or {"type": "text", "data": "..."}. ReceiveText is called on the
// data channel's goroutine with the text made valid UTF-8; texts longer than
// DefaultTextInputBytes are dropped (the client is warned). It must not block.
type TextReceiver interface {
	ReceiveText(s *Session, text string)
}

// AudioSource generates the audio of a receive-mode connection (the server speaks). The
// Stream resamples and paces it in real time: yield blocks while more than a moment of audio
// is queued, so a generator may produce as fast as it can. Yielding an error ends the session
// with it; the session ends normally once the sequence ends and its audio was sent.
type AudioSource func(s *Session) iter.Seq2[AudioFrame, error]

func (f AudioSource) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != Audio || s.mode != Receive {
		return wrongHandler(s, f)
	}
	s.audio = &audioConfig{source: f}
	return nil
}

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

func (f AudioVideoHandlerFactory) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != AudioVideo || s.mode == Receive {
		return wrongHandler(s, f)
	}
	s.audio = &audioConfig{factory: func() AudioHandler {
		if h := f(); h != nil {
			return h
		}
		return nil // a nil AudioVideoHandler must stay a nil AudioHandler
	}}
	return nil
}

// AudioAgent is the Handler of an audio handler that the stream must know more of than its
// factory: a turn-taking voice agent (package voice's ReplyOnPause embeds one), or a handler
// of your own. Embedding an AudioAgent in a struct of your own makes a pointer to that struct
// a Handler.
//
// An AudioAgent is read once, by New; do not change it afterwards.
type AudioAgent struct {
	// NewHandler makes the handler of a new connection (required); see AudioHandlerFactory.
	NewHandler func() AudioHandler
	// Check, if set, is called once by New with the stream being built (its Inputs and
	// Logger are set); an error fails New.
	Check func(s *Stream) error
	// TextInput names a Text input that talks to the agent: the built-in page shows a text
	// box for it. New fails if the stream does not declare it as Text.
	TextInput string
	// TurnTaking says the handler takes turns in speech (detects pauses, may be
	// interrupted): the built-in page then opens the microphone with echo cancellation,
	// noise suppression and gain control on (see TrackConstraints) and says so.
	TurnTaking bool
}

// bind installs an AudioAgent on an audio stream.
func (a *AudioAgent) bind(s *Stream) error {
	if a == nil || a.NewHandler == nil {
		return errNilHandler
	}
	if s.modality != Audio || s.mode == Receive {
		return wrongHandler(s, a)
	}
	if name := a.TextInput; name != "" {
		if i := slices.IndexFunc(s.cfg.inputs, func(in Input) bool { return in.Name == name }); i < 0 || s.cfg.inputs[i].Kind != KindText {
			return fmt.Errorf("%w: text input %q: declare it with WithInputs(fastrtc.Text(%q, \"\"))", ErrInvalidConfig, name, name)
		}
	}
	if a.Check != nil {
		if err := a.Check(s); err != nil {
			return err
		}
	}
	s.audio = &audioConfig{factory: a.NewHandler, turnTaking: a.TurnTaking, textInput: a.TextInput}
	return nil
}

// audioConfig is the bound audio-side handler of a Stream.
type audioConfig struct {
	factory    func() AudioHandler // audio send-receive / send, audio-video
	source     AudioSource         // audio receive
	turnTaking bool                // AudioAgent.TurnTaking (the built-in page says so)
	textInput  string              // AudioAgent.TextInput, for the page's text box
}

// AudioFunc processes one audio frame of a connection and returns the audio to send back
// (the audio counterpart of VideoFunc). Each input frame goes through it and what it returns
// (if it has samples) is sent back, paced in real time. It runs on the session's audio input
// goroutine, one frame at a time; its input's samples are only valid during the call, and it
// may return them (they are copied) or samples it owns. Up to one second of output waits for
// sending; beyond that, frames are dropped (the function is faster than real time).
// Returning an error ends this session only.
type AudioFunc func(s *Session, in AudioFrame) (AudioFrame, error)

func (f AudioFunc) bind(s *Stream) error {
	if f == nil {
		return errNilHandler
	}
	if s.modality != Audio || s.mode == Receive {
		return wrongHandler(s, f)
	}
	s.audio = &audioConfig{factory: f.NewHandler}
	return nil
}

// NewHandler makes the AudioHandler of one connection that runs f: f.NewHandler is an
// AudioHandlerFactory, for an AudioAgent or a handler that wraps it.
func (f AudioFunc) NewHandler() AudioHandler {
	return &funcHandler{fn: f, ch: make(chan AudioFrame, 50), free: make(chan []int16, 52)}
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
