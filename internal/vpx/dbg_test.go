package vpx

import (
	"runtime"
	"testing"
)

func TestDbgLeak(t *testing.T) {
	enc, dec := newCodecs(t, EncoderConfig{})
	a, b := pattern(640, 480, 0), pattern(320, 240, 0)
	for i := 0; i < 2001; i++ {
		img := a
		if i%2 == 1 {
			img = b
		}
		f, _, err := enc.Encode(nil, img, int64(i)*3000, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dec.Decode(f); err != nil {
			t.Fatal(err)
		}
		if i%250 == 0 {
			runtime.GC()
			t.Logf("%d: RSS %d MB", i, rssBytes(t)>>20)
		}
	}
}
