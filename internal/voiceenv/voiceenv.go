// Package voiceenv is where the examples and tools read their voice agent's detector from
// the environment, explicitly: package voice itself reads no environment variable.
package voiceenv

import (
	"fmt"
	"os"

	"github.com/fastrtc-go/fastrtc/voice"
)

// SileroModelEnv names the environment variable that the examples and tools read: the path
// of a Silero VAD v5 ONNX file (./scripts/silero.sh installs one and prints its path).
const SileroModelEnv = "FASTRTC_SILERO_MODEL"

// Detector returns the options that make the Silero VAD the detector when SileroModelEnv
// names a model file (nil when it is unset: ReplyOnPause's default WebRTC VAD), and an error
// when the file is not such a model.
func Detector() ([]voice.Option, error) {
	path := os.Getenv(SileroModelEnv)
	if path == "" {
		return nil, nil
	}
	m, err := voice.LoadSileroModelFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SileroModelEnv, err)
	}
	return []voice.Option{voice.WithSilero(m, voice.SileroOptions{})}, nil
}
