package fastrtc

import (
	"image"
	"iter"
)

// A handler is the code a Stream runs for each connection. Which handler type a Stream takes
// depends on its modality and mode:
//
//	modality     send-receive         send                 receive
//	video        VideoFunc            VideoFunc            VideoSource
//	audio        AudioHandler         AudioHandler         AudioSource
//	audio-video  AudioVideoHandler    AudioVideoHandler    (not supported)
//
// New rejects any other combination with an error that lists what is allowed. Plain function
// literals of the same signatures are accepted as well as the named types.

// VideoFunc processes one video frame of a connection and returns the frame to send back.
//
// It is called on the session's video goroutine, one frame at a time, never concurrently for
// one session; different sessions run concurrently. frame and its image are valid only until
// VideoFunc returns. The returned image is encoded before the next call; it may be any
// image.Image (a 4:2:0 *image.YCbCr is encoded without conversion) and may be frame's own
// image. Returning a nil image sends nothing for this frame (in send mode the result is always
// ignored). Returning an error ends this session only: its client gets an "error" message.
type VideoFunc func(s *Session, frame *VideoFrame) (image.Image, error)

// VideoSource generates the video of a receive-mode connection. The Stream pulls frames from
// the returned sequence and paces them at the stream's frame rate (WithFPS, default 30): the
// sequence's yield blocks until the frame was encoded and its slot in time has come, so a
// generator never needs to sleep. Yielding a non-nil error ends the session with that error;
// the session ends normally when the sequence ends. The sequence should return when
// s.Context() is done; yield returns false then.
type VideoSource func(s *Session) iter.Seq2[image.Image, error]

// videoFunc and videoSource are the unnamed signatures New also accepts.
type (
	videoFuncSig   = func(s *Session, frame *VideoFrame) (image.Image, error)
	videoSourceSig = func(s *Session) iter.Seq2[image.Image, error]
)
