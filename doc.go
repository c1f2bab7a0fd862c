// Package fastrtc streams real-time audio and video between browsers (or phones) and a Go
// handler over WebRTC, WebSocket and Twilio Media Streams: a Go port of Python's FastRTC that
// speaks its wire protocol, so FastRTC's frontends work against a Go server unchanged.
//
// # Streams
//
// A Stream is built from a handler, a Modality (Video, Audio, AudioVideo) and a Mode
// (SendReceive, Send, Receive), and mounted on any router:
//
//	flip := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
//		return f.FlipVertical(), nil
//	}
//	stream, err := fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive,
//		fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3)))
//	if err != nil { ... }
//	defer stream.Close()
//	mux := http.NewServeMux()
//	stream.Mount(mux)
//
// The browser's media is decoded to plain frames (VideoFrame: 4:2:0 images, handed over
// without copies; AudioFrame: 16-bit PCM) for the handler, and what the handler returns is
// encoded (VP8 with libvpx, Opus with libopus) and sent back. Handler is a closed interface:
// its documentation has the table of which handler type each modality and mode takes, and a
// value of any other type does not compile as a handler.
//
// # Transports
//
// Every connection is a Session on a transport: a WebRTC peer connection (POST
// /webrtc/offer), FastRTC's WebSocket audio protocol (GET /websocket/offer), or Twilio Media
// Streams (GET /telephone/handler). All of them open, start and end a session the same way,
// share the concurrency limit, and refuse with FastRTC's failure JSON.
//
// # Writing your own turn-taking handler
//
// Package voice's ReplyOnPause is built on public hooks, and only on them, that any
// AudioHandler can use: Session.Go runs a goroutine the session owns (its end waits for it; a
// panic ends only that session), Session.Fail ends the session with an error its client is
// told, Session.InputsChanged wakes a goroutine when the client posts inputs,
// Session.RequestInputs asks the client for them and InputReceiver hears they were posted,
// TextReceiver takes the client's text, Session.ClearAudio drops queued output on an
// interruption, Session.ReplyStarted records a turn's latency, Session.CloseOnEnd and OnEnd
// tie a detector's life to the session's, Session.Logger logs with the session's id, and a
// handler that implements ReplyTrigger answers Session.TriggerReply. AudioAgent tells the
// stream (and its built-in page) that the handler takes turns.
//
// # Go clients
//
// Package client connects a Go program to a FastRTC server (this one or Python's) as a
// browser does, with the same frame types (package media): bots, tests and load tools.
//
// # Sessions, inputs and outputs
//
// Every connection is a Session: it carries the connection's id, a context cancelled when
// the connection ends, the connection's additional inputs (declared with WithInputs, set by
// clients over POST /input_hook or by Stream.SetInput), and Emit, which streams additional
// outputs to GET /outputs as Server-Sent Events. A handler error or panic ends only its own
// session, and its client is told with an "error" message.
//
// # Voice agents
//
// Package voice (github.com/fastrtc-go/fastrtc/voice) holds the voice-agent framework:
// voice.NewReplyOnPause wraps a reply function in FastRTC's pause detection (the user's
// speech is buffered until they pause, then the reply's audio is streamed back, and new
// speech can interrupt it), with the WebRTC or Silero VAD, stop words and text input. This
// package does not import it: a video-only program links none of it.
//
// # Process-wide settings
//
// The library changes nothing process-wide by itself and reads no environment variable.
// LimitMallocArenas is the one process-level tuning it offers, for main to call.
//
// # Concurrency
//
// Stream and Session methods are safe for concurrent use. Each handler kind documents the
// goroutine it is called on; handlers of different sessions run concurrently.
package fastrtc
