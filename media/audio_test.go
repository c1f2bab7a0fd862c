package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/fastrtc-go/fastrtc/internal/wav"
)

func TestAudioFrameWAV(t *testing.T) {
	f := AudioFrame{SampleRate: 16000, Channels: 2, Samples: []int16{1, -2, 300, -32768, 32767, 0}}
	b, err := f.WAV()
	if err != nil {
		t.Fatal(err)
	}
	s, rate, ch, err := wav.Read(bytes.NewReader(b))
	if err != nil || rate != 16000 || ch != 2 || len(s) != 6 || s[3] != -32768 || s[4] != 32767 {
		t.Fatalf("round trip: %v %d %d %v", err, rate, ch, s)
	}
	if _, err := (AudioFrame{SampleRate: 16000, Channels: 2, Samples: []int16{1}}).WAV(); err == nil {
		t.Error("half a stereo frame encoded")
	}
}

func TestReadPCMFrames(t *testing.T) {
	// 47 ms of 24 kHz mono (1128 samples), delivered one byte at a time.
	pcm := make([]byte, 2*1128)
	for i := 0; i < 1128; i++ {
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(i-500)))
	}
	var got []int16
	var lens []int
	for f, err := range ReadPCMFrames(iotest.OneByteReader(bytes.NewReader(pcm)), 24000, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if f.SampleRate != 24000 || f.Channels != 1 {
			t.Fatalf("frame %+v", f)
		}
		lens = append(lens, len(f.Samples))
		got = append(got, f.Samples...)
	}
	if len(lens) != 3 || lens[0] != 480 || lens[1] != 480 || lens[2] != 168 {
		t.Errorf("frame lengths %v, want [480 480 168]", lens)
	}
	for i, s := range got {
		if s != int16(i-500) {
			t.Fatalf("sample %d = %d", i, s)
		}
	}
	// A read error is yielded after the frames before it; an odd trailing byte is dropped.
	bad := io.MultiReader(bytes.NewReader(pcm[:961*2+1]), iotest.ErrReader(errors.New("boom")))
	n, sawErr := 0, false
	for f, err := range ReadPCMFrames(bad, 24000, 1) {
		if err != nil {
			sawErr = true
			continue
		}
		n += len(f.Samples)
	}
	if !sawErr || n != 961 {
		t.Errorf("%d samples, error %v; want 961 and the error", n, sawErr)
	}
	// Stopping early stops reading.
	for _, err := range ReadPCMFrames(bytes.NewReader(pcm), 24000, 1) {
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	for _, err := range ReadPCMFrames(bytes.NewReader(pcm), 22051, 1) {
		if err == nil {
			t.Error("22051 Hz accepted (20 ms is not a whole number of samples)")
		}
	}
}
