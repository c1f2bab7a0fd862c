package fastrtc

import "fmt"

// Modality is the kind of media a Stream carries.
type Modality string

// The modalities a Stream supports.
const (
	// Video streams video only.
	Video Modality = "video"
	// Audio streams audio only.
	Audio Modality = "audio"
	// AudioVideo streams audio and video on one peer connection.
	AudioVideo Modality = "audio-video"
)

// Mode is the direction of a Stream, seen from the client (the browser).
type Mode string

// The modes a Stream supports.
const (
	// SendReceive: the client sends media and receives the handler's media back.
	SendReceive Mode = "send-receive"
	// Send: the client sends media; the handler produces only additional outputs.
	Send Mode = "send"
	// Receive: the server generates media and the client only receives it.
	Receive Mode = "receive"
)

func (m Modality) valid() error {
	switch m {
	case Video, Audio, AudioVideo:
		return nil
	}
	return fmt.Errorf("%w: modality %q (allowed: %q, %q, %q)", ErrInvalidConfig, string(m), Video, Audio, AudioVideo)
}

func (m Mode) valid() error {
	switch m {
	case SendReceive, Send, Receive:
		return nil
	}
	return fmt.Errorf("%w: mode %q (allowed: %q, %q, %q)", ErrInvalidConfig, string(m), SendReceive, Send, Receive)
}

// clientSends reports whether the client sends media in this mode.
func (m Mode) clientSends() bool { return m == SendReceive || m == Send }

// clientReceives reports whether the client receives media in this mode.
func (m Mode) clientReceives() bool { return m == SendReceive || m == Receive }
