package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, ch := range []int{1, 2} {
		in := make([]int16, 4801*ch)
		for i := range in {
			in[i] = int16(i*7919 - 20000)
		}
		in[0], in[1] = -32768, 32767
		var buf bytes.Buffer
		if err := Write(&buf, in, 48000, ch); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 44+2*len(in) {
			t.Fatalf("size %d, want %d", buf.Len(), 44+2*len(in))
		}
		out, rate, gotCh, err := Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if rate != 48000 || gotCh != ch || !slices.Equal(in, out) {
			t.Fatalf("round trip: rate %d ch %d equal %v", rate, gotCh, slices.Equal(in, out))
		}
	}
}

func TestWriteFileReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.wav")
	in := []int16{1, -2, 3, -4}
	if err := WriteFile(p, in, 16000, 2); err != nil {
		t.Fatal(err)
	}
	out, rate, ch, err := ReadFile(p)
	if err != nil || rate != 16000 || ch != 2 || !slices.Equal(in, out) {
		t.Fatalf("ReadFile = %v %d %d %v", out, rate, ch, err)
	}
	if sox, err := exec.LookPath("soxi"); err == nil {
		o, err := exec.Command(sox, "-s", p).Output()
		if err != nil || string(bytes.TrimSpace(o)) != "2" {
			t.Fatalf("soxi -s = %q, %v", o, err)
		}
	}
}

// Extra chunks (LIST) are skipped, odd-sized chunks are padded, an
// extensible fmt chunk is accepted, and an overlong data size reads to EOF.
func TestReadTolerant(t *testing.T) {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	b.Write(le.AppendUint32(nil, 0xFFFFFFFF))
	b.WriteString("WAVE")
	b.WriteString("LIST")
	b.Write(le.AppendUint32(nil, 3))
	b.WriteString("abc\x00")
	b.WriteString("fmt ")
	b.Write(le.AppendUint32(nil, 40))
	f := make([]byte, 40)
	le.PutUint16(f[0:], formatExtensible)
	le.PutUint16(f[2:], 1)
	le.PutUint32(f[4:], 8000)
	le.PutUint32(f[8:], 16000)
	le.PutUint16(f[12:], 2)
	le.PutUint16(f[14:], 16)
	le.PutUint16(f[24:], formatPCM)
	b.Write(f)
	b.WriteString("data")
	b.Write(le.AppendUint32(nil, 0xFFFFFFF0))
	b.Write(le.AppendUint16(nil, 5))
	b.Write(le.AppendUint16(nil, 0xFFFF))
	out, rate, ch, err := Read(&b)
	if err != nil || rate != 8000 || ch != 1 || !slices.Equal(out, []int16{5, -1}) {
		t.Fatalf("Read = %v %d %d %v", out, rate, ch, err)
	}
}

func TestReadErrors(t *testing.T) {
	if _, _, _, err := Read(bytes.NewReader([]byte("not a wav file at all"))); !errors.Is(err, ErrNotWAV) {
		t.Fatalf("err = %v, want ErrNotWAV", err)
	}
	var b bytes.Buffer
	_ = Write(&b, []int16{1, 2}, 8000, 1)
	raw := b.Bytes()
	binary.LittleEndian.PutUint16(raw[34:], 8) // 8-bit
	if _, _, _, err := Read(bytes.NewReader(raw)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	if _, _, _, err := Read(bytes.NewReader(raw[:20])); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	if err := Write(&b, []int16{1, 2, 3}, 8000, 2); err == nil {
		t.Fatal("Write accepted a partial frame")
	}
}

func TestFixtures(t *testing.T) {
	for _, name := range []string{"hello48k.wav", "two_utterances48k.wav"} {
		s, rate, ch, err := ReadFile(filepath.Join("..", "..", "testdata", "audio", name))
		if err != nil {
			t.Fatal(err)
		}
		if rate != 48000 || ch != 1 || len(s) < 48000 {
			t.Fatalf("%s: %d Hz, %d ch, %d samples", name, rate, ch, len(s))
		}
	}
}

// TestWriteRefusesHeaderOverflow: arguments whose header fields do not fit (block align in
// 16 bits, byte rate in 32) are refused instead of written wrapped.
func TestWriteRefusesHeaderOverflow(t *testing.T) {
	for _, c := range []struct{ rate, ch int }{{48000, 0x8000}, {1 << 31, 1}, {1 << 30, 2}, {0, 1}, {48000, 0}} {
		if err := Write(io.Discard, nil, c.rate, c.ch); err == nil {
			t.Errorf("Write(%d Hz, %d channels) = nil, want an error", c.rate, c.ch)
		}
	}
	var b bytes.Buffer
	if err := Write(&b, make([]int16, 4), 48000, 2); err != nil || b.Len() != 44+8 {
		t.Errorf("Write(48 kHz stereo) = %v, %d bytes", err, b.Len())
	}
}
