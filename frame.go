package fastrtc

import "github.com/fastrtc-go/fastrtc/media"

// VideoFrame is one decoded input video frame given to a video handler; see media.VideoFrame
// for its fields, methods and lifetime (valid only until the handler returns; Image is
// read-only). The Go client (package client) receives the same type.
type VideoFrame = media.VideoFrame

// AudioFrame is a block of 16-bit PCM audio; see media.AudioFrame. Handlers receive and
// return it, and the Go client (package client) sends and receives the same type.
type AudioFrame = media.AudioFrame

// AudioFromFloat32 builds an AudioFrame from samples in [-1, 1] (clipped).
func AudioFromFloat32(sampleRate, channels int, samples []float32) AudioFrame {
	return media.AudioFromFloat32(sampleRate, channels, samples)
}
