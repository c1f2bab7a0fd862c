package vsend

import (
	"time"
)

// Degradation says what the sender gives up first when the link cannot carry the video at
// full size and rate, as RTCRtpSendParameters.degradationPreference does in browsers.
type Degradation int

const (
	// Balanced lowers the resolution first, then the frame rate (the default).
	Balanced Degradation = iota
	// MaintainFramerate lowers only the resolution.
	MaintainFramerate
	// MaintainResolution lowers only the frame rate.
	MaintainResolution
)

// scales are the resolutions the sender steps through, as fractions of the source's
// (numerator over 8): 1, 3/4, 1/2, 3/8, 1/4, as libwebrtc's quality scaler does.
var scales = [...]int{8, 6, 4, 3, 2}

// bitsPerPixel is the VP8 bit rate a resolution needs to look right at 30 fps, in bit/s per
// pixel: 640x480 needs about 490 kbit/s, 480x360 280, 320x240 120.
const bitsPerPixel = 1.6

// minWidth and minHeight bound how small the sender scales.
const minWidth, minHeight = 96, 72

// Hold times: a step down needs the shortfall for downAfter (at once when the target is
// below half of what the size needs), a step up needs the headroom for upAfter.
const (
	downAfter = 500 * time.Millisecond
	upAfter   = 2 * time.Second
)

// controller picks the encoder's resolution and frame rate from the target bit rate. It is
// used by one goroutine (the sender's).
type controller struct {
	pref      Degradation
	fps       int // the source's nominal frame rate
	step      int // index in scales
	since     time.Time
	direction int // -1 wants smaller, +1 wants larger, 0 content
}

// needed returns the bit rate (bit/s) that w×h at fps needs.
func needed(w, h, fps int) float64 {
	return float64(w*h) * bitsPerPixel * float64(fps) / 30
}

// scaled returns w×h scaled by scales[step], even-sized.
func scaled(w, h, step int) (int, int) {
	s := scales[step]
	return max(w*s/8, 2) &^ 1, max(h*s/8, 2) &^ 1
}

// lastStep returns the smallest scale step allowed for a w×h source.
func lastStep(w, h int) int {
	i := 0
	for i+1 < len(scales) {
		sw, sh := scaled(w, h, i+1)
		if sw < minWidth || sh < minHeight {
			break
		}
		i++
	}
	return i
}

// decide returns the size to encode a w×h source at and the frame rate, for a video target
// of bps bit/s at time now.
func (c *controller) decide(w, h, bps int, now time.Time) (ew, eh, fps int) {
	target := float64(bps)
	if c.pref != MaintainResolution {
		last := lastStep(w, h)
		c.step = min(c.step, last)
		want := 0
		if c.step < last && target < 0.85*c.need(w, h, c.step) {
			want = -1
		} else if c.step > 0 && target > 1.25*c.need(w, h, c.step-1) {
			want = 1
		}
		if want != c.direction {
			c.direction, c.since = want, now
		}
		switch {
		case want < 0 && (now.Sub(c.since) >= downAfter || target < 0.5*c.need(w, h, c.step)):
			c.step++
			c.direction, c.since = 0, now
		case want > 0 && now.Sub(c.since) >= upAfter:
			c.step--
			c.direction, c.since = 0, now
		}
	} else {
		c.step = 0
	}
	ew, eh = scaled(w, h, c.step)
	fps = c.fps
	if c.pref != MaintainFramerate {
		// What is left after the smallest allowed size: fewer frames, each one good.
		if need := needed(ew, eh, c.fps); target < need {
			fps = max(int(float64(c.fps)*target/need), min(5, c.fps))
			if c.pref == Balanced {
				fps = max(fps, min(10, c.fps))
			}
		}
	}
	return ew, eh, fps
}

// need returns the bit rate a w×h source scaled by step needs at the nominal frame rate.
func (c *controller) need(w, h, step int) float64 {
	sw, sh := scaled(w, h, step)
	return needed(sw, sh, c.fps)
}

// AudioBitrate returns the Opus bit rate for a link estimate of linkBps (bit/s), at most
// configured: Opus keeps speech clear at 16 kbit/s, so audio gives way only when the link is
// very tight.
func AudioBitrate(linkBps, configured int) int {
	switch {
	case linkBps <= 0:
		return configured
	case linkBps < 100_000:
		return min(configured, 12_000)
	case linkBps < 250_000:
		return min(configured, 20_000)
	default:
		return configured
	}
}
