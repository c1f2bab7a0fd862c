package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/fastrtc-go/fastrtc/internal/wav"
)

// WAV encodes the frame as a 16-bit PCM WAVE file (FastRTC's audio_to_bytes): the form most
// speech-to-text services accept in an upload. It returns an error if the frame's rate or
// channel count is not positive or its samples do not fill whole frames.
func (f AudioFrame) WAV() ([]byte, error) {
	var b bytes.Buffer
	b.Grow(44 + 2*len(f.Samples))
	if err := wav.Write(&b, f.Samples, f.SampleRate, f.Channels); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return b.Bytes(), nil
}

// ReadPCMFrames turns a stream of 16-bit little-endian interleaved PCM at sampleRate (a text-
// to-speech service's response body, say) into 20 ms AudioFrames as the bytes arrive
// (FastRTC's aggregate_bytes_to_16bit): reads of any size, odd byte counts and samples split
// across reads are handled; the last frame may be shorter. A read error other than io.EOF is
// yielded and ends the sequence. Stop ranging to stop reading.
func ReadPCMFrames(r io.Reader, sampleRate, channels int) iter.Seq2[AudioFrame, error] {
	return func(yield func(AudioFrame, error) bool) {
		if sampleRate <= 0 || sampleRate%50 != 0 || channels < 1 {
			yield(AudioFrame{}, fmt.Errorf("media: ReadPCMFrames: %d Hz, %d channels: the rate must be a positive multiple of 50", sampleRate, channels))
			return
		}
		frameBytes := sampleRate / 50 * channels * 2
		buf := make([]byte, 0, 2*frameBytes)
		chunk := make([]byte, 4096)
		emit := func(b []byte) bool {
			s := make([]int16, len(b)/2)
			for i := range s {
				s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
			}
			return yield(AudioFrame{SampleRate: sampleRate, Channels: channels, Samples: s}, nil)
		}
		for {
			n, err := r.Read(chunk)
			buf = append(buf, chunk[:n]...)
			i := 0
			for ; i+frameBytes <= len(buf); i += frameBytes {
				if !emit(buf[i : i+frameBytes]) {
					return
				}
			}
			buf = buf[:copy(buf, buf[i:])]
			if err != nil {
				if tail := len(buf) / (2 * channels) * 2 * channels; tail > 0 {
					if !emit(buf[:tail]) {
						return
					}
				}
				if !errors.Is(err, io.EOF) {
					yield(AudioFrame{}, fmt.Errorf("media: reading PCM: %w", err))
				}
				return
			}
		}
	}
}
