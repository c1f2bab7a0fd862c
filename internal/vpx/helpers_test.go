package vpx

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"image"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

const videoTestdata = "../../testdata/video"

// pattern draws frame i of a moving test pattern: gradients, a checkerboard and a box that
// moves 3 pixels per frame.
func pattern(w, h, i int) *image.YCbCr {
	img := yuv.NewI420(w, h)
	bx, by := (i*3)%max(w, 1), (i*2)%max(h, 1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 40 + (x*120)/max(w, 1) + (y*60)/max(h, 1)
			if (x/8+y/8)%2 == 0 {
				v += 20
			}
			if x >= bx && x < bx+w/5+1 && y >= by && y < by+h/5+1 {
				v = 220
			}
			img.Y[y*img.YStride+x] = byte(v)
		}
	}
	for y := 0; y < (h+1)/2; y++ {
		for x := 0; x < (w+1)/2; x++ {
			img.Cb[y*img.CStride+x] = byte(90 + (x*80)/max(w/2, 1))
			img.Cr[y*img.CStride+x] = byte(170 - (y*80)/max(h/2, 1) + i%16)
		}
	}
	return img
}

// readIVF returns the frames of an IVF file.
func readIVF(tb testing.TB, path string) (frames [][]byte, w, h int) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(bufio.NewReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, frame)
	}
	return frames, int(hdr.Width), int(hdr.Height)
}

// writeIVF writes VP8 frames to an IVF file (timebase 1/30).
func writeIVF(tb testing.TB, path string, w, h int, frames [][]byte) {
	tb.Helper()
	var b bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], "VP80")
	binary.LittleEndian.PutUint16(hdr[12:], uint16(w))
	binary.LittleEndian.PutUint16(hdr[14:], uint16(h))
	binary.LittleEndian.PutUint32(hdr[16:], 30)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	binary.LittleEndian.PutUint32(hdr[24:], uint32(len(frames)))
	b.Write(hdr)
	for i, f := range frames {
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		b.Write(fh)
		b.Write(f)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// i420MD5 hashes a picture the way ffmpeg's framemd5 does for yuv420p rawvideo.
func i420MD5(img *image.YCbCr) string {
	h := md5.New()
	w, ht := img.Rect.Dx(), img.Rect.Dy()
	for y := 0; y < ht; y++ {
		h.Write(img.Y[y*img.YStride : y*img.YStride+w])
	}
	cw, ch := (w+1)/2, (ht+1)/2
	for _, p := range [][]byte{img.Cb, img.Cr} {
		for y := 0; y < ch; y++ {
			h.Write(p[y*img.CStride : y*img.CStride+cw])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readFrameMD5 parses an ffmpeg framemd5 file.
func readFrameMD5(tb testing.TB, path string) []string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var sums []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		sums = append(sums, strings.TrimSpace(f[len(f)-1]))
	}
	return sums
}

// needFFmpeg returns the path of ffmpeg or skips the test.
func needFFmpeg(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		tb.Skip("ffmpeg not found in PATH (apt-get install ffmpeg): skipping")
	}
	return p
}

// noisyFixture returns the path of testdata/video/noisy640.ivf (STACK.md: ffmpeg testsrc
// 640x480 with temporal noise, libvpx 1500 kbit/s CBR, cpu-used 8, 10 s), generating it with
// ffmpeg on first use. The file (1.8 MB) is git-ignored.
func noisyFixture(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(videoTestdata, "noisy640.ivf")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ffmpeg := needFFmpeg(tb)
	tmp := path + ".tmp"
	cmd := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc=size=640x480:rate=30", "-t", "10",
		"-vf", "noise=alls=12:allf=t", "-c:v", "libvpx", "-b:v", "1500k",
		"-minrate", "1500k", "-maxrate", "1500k", "-deadline", "realtime", "-cpu-used", "8",
		"-g", "60", "-auto-alt-ref", "0", "-f", "ivf", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		tb.Fatalf("generating %s: %v\n%s", path, err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path
}
