// Package wav reads and writes minimal RIFF/WAVE files holding 16-bit
// linear PCM, for test fixtures and examples.
//
// Read accepts WAVE_FORMAT_PCM and WAVE_FORMAT_EXTENSIBLE (PCM sub-format)
// with 16 bits per sample, skips unknown chunks, and tolerates a data chunk
// whose declared size overruns the file (as written by tools streaming to a
// pipe). Write produces the canonical 44-byte header. Samples are
// interleaved when there is more than one channel.
//
// The functions keep no state and are safe for concurrent use.
package wav

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Sentinel errors returned (wrapped) by Read.
var (
	// ErrNotWAV means the stream is not a RIFF/WAVE file.
	ErrNotWAV = errors.New("wav: not a RIFF/WAVE file")
	// ErrUnsupported means the file is WAVE but not 16-bit integer PCM.
	ErrUnsupported = errors.New("wav: unsupported format (want 16-bit PCM)")
	// ErrMalformed means a required chunk is missing or inconsistent.
	ErrMalformed = errors.New("wav: malformed file")
)

const (
	formatPCM        = 1
	formatExtensible = 0xFFFE
)

// Read decodes a 16-bit PCM WAVE stream and returns its interleaved samples,
// sample rate and channel count.
func Read(r io.Reader) (samples []int16, sampleRate, channels int, err error) {
	br := bufio.NewReader(r)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: reading RIFF header: %w", ErrNotWAV, err)
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, 0, 0, ErrNotWAV
	}
	haveFmt := false
	for {
		var ch [8]byte
		if _, err := io.ReadFull(br, ch[:]); err != nil {
			if haveFmt {
				return nil, 0, 0, fmt.Errorf("%w: no data chunk", ErrMalformed)
			}
			return nil, 0, 0, fmt.Errorf("%w: no fmt chunk", ErrMalformed)
		}
		id := string(ch[0:4])
		size := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if size < 16 || size > 1<<16 {
				return nil, 0, 0, fmt.Errorf("%w: fmt chunk size %d", ErrMalformed, size)
			}
			buf := make([]byte, size+size&1)
			if _, err := io.ReadFull(br, buf); err != nil {
				return nil, 0, 0, fmt.Errorf("%w: reading fmt chunk: %w", ErrMalformed, err)
			}
			format := binary.LittleEndian.Uint16(buf[0:2])
			channels = int(binary.LittleEndian.Uint16(buf[2:4]))
			sampleRate = int(binary.LittleEndian.Uint32(buf[4:8]))
			blockAlign := int(binary.LittleEndian.Uint16(buf[12:14]))
			bitsPerSample := int(binary.LittleEndian.Uint16(buf[14:16]))
			if format == formatExtensible {
				if size < 40 {
					return nil, 0, 0, fmt.Errorf("%w: short extensible fmt chunk", ErrMalformed)
				}
				format = binary.LittleEndian.Uint16(buf[24:26]) // first two bytes of the sub-format GUID
			}
			if format != formatPCM || bitsPerSample != 16 {
				return nil, 0, 0, fmt.Errorf("%w: format %#x, %d bits", ErrUnsupported, format, bitsPerSample)
			}
			if channels < 1 || sampleRate < 1 || blockAlign != 2*channels {
				return nil, 0, 0, fmt.Errorf("%w: %d channels, %d Hz, block align %d", ErrMalformed, channels, sampleRate, blockAlign)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, 0, 0, fmt.Errorf("%w: data chunk before fmt chunk", ErrMalformed)
			}
			data, err := readData(br, size)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("%w: reading data chunk: %w", ErrMalformed, err)
			}
			n := len(data) / 2
			n -= n % channels // drop a trailing partial frame
			samples = make([]int16, n)
			for i := range samples {
				samples[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
			}
			return samples, sampleRate, channels, nil
		default:
			if _, err := io.CopyN(io.Discard, br, size+size&1); err != nil {
				return nil, 0, 0, fmt.Errorf("%w: skipping %q chunk: %w", ErrMalformed, id, err)
			}
		}
	}
}

// readData reads a data chunk of the declared size, or up to EOF when the
// declared size is larger than what the stream holds.
func readData(r io.Reader, size int64) ([]byte, error) {
	const maxPrealloc = 64 << 20
	if size <= maxPrealloc {
		buf := make([]byte, size)
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return buf[:n], nil
		}
		return buf, err
	}
	return io.ReadAll(io.LimitReader(r, size))
}

// ReadFile reads the WAVE file at path; see Read.
func ReadFile(path string) (samples []int16, sampleRate, channels int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("wav: %w", err)
	}
	defer f.Close()
	samples, sampleRate, channels, err = Read(f)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return samples, sampleRate, channels, nil
}

// Write encodes interleaved 16-bit samples as a canonical PCM WAVE stream.
// len(samples) must be a multiple of channels.
func Write(w io.Writer, samples []int16, sampleRate, channels int) error {
	// The header holds channels*2 in 16 bits and sampleRate*channels*2 in 32.
	if channels < 1 || channels > 0x7FFF || sampleRate < 1 || int64(sampleRate)*int64(channels)*2 > 0xFFFFFFFF ||
		len(samples)%channels != 0 {
		return fmt.Errorf("wav: invalid arguments: %d samples, %d Hz, %d channels", len(samples), sampleRate, channels)
	}
	dataLen := 2 * int64(len(samples))
	if dataLen > 0xFFFFFFFF-36 {
		return fmt.Errorf("wav: %d samples do not fit in a RIFF file", len(samples))
	}
	var hdr [44]byte
	copy(hdr[0:4], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:8], uint32(36+dataLen))
	copy(hdr[8:16], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:20], 16)
	binary.LittleEndian.PutUint16(hdr[20:22], formatPCM)
	binary.LittleEndian.PutUint16(hdr[22:24], uint16(channels))
	binary.LittleEndian.PutUint32(hdr[24:28], uint32(sampleRate))
	binary.LittleEndian.PutUint32(hdr[28:32], uint32(sampleRate*channels*2))
	binary.LittleEndian.PutUint16(hdr[32:34], uint16(channels*2))
	binary.LittleEndian.PutUint16(hdr[34:36], 16)
	copy(hdr[36:40], "data")
	binary.LittleEndian.PutUint32(hdr[40:44], uint32(dataLen))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("wav: writing header: %w", err)
	}
	buf := make([]byte, 0, 8192)
	for len(samples) > 0 {
		n := min(len(samples), cap(buf)/2)
		buf = buf[:2*n]
		for i, s := range samples[:n] {
			binary.LittleEndian.PutUint16(buf[2*i:], uint16(s))
		}
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("wav: writing data: %w", err)
		}
		samples = samples[n:]
	}
	return nil
}

// WriteFile writes samples to a new WAVE file at path; see Write.
func WriteFile(path string, samples []int16, sampleRate, channels int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("wav: %w", err)
	}
	bw := bufio.NewWriter(f)
	if err := Write(bw, samples, sampleRate, channels); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("wav: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("wav: %w", err)
	}
	return nil
}
