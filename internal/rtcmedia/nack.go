package rtcmedia

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// NackTracker finds the packets missing from one incoming RTP stream and says when to ask
// the sender for them again (RTCP generic NACK, RFC 4585). A gap is asked for as soon as a
// newer packet shows it, then again after each round trip (plus a margin), the spacing
// doubling after the third request, up to MaxNackTries times, and only for as long as the
// receiver waits for the packet (RecoveryWait, and a round trip): a packet of a frame already given up is
// not worth its retransmission. The round trip is the larger of the transport's (SetRTT)
// and the time the sender's retransmissions have been taking to arrive: on a link whose
// queue fills, a retransmission waits in the queue too, and asking again every 60 ms then
// sent each lost packet up to ten times into the congested link (353 NACKs for 41 losses
// when a link fell from 4 Mbit/s to 600 kbit/s). pion's generator instead NACKs every gap
// on a fixed 100 ms tick: on a lossy link its retransmissions came after the receiver had
// given the frame up.
//
// A NackTracker is driven by the stream's reader (Push per packet) and is not safe for
// concurrent use. It does not allocate in steady state.
type NackTracker struct {
	started bool
	newest  uint16
	rtt     time.Duration
	resp    time.Duration       // smoothed time from the last NACK of a packet to its arrival
	missing []nackEntry         // oldest first
	late    [lateRing]nackEntry // the last entries given up after being asked for
	lateN   int
	out     []uint16
	stats   NackStats
}

// NackStats counts what a NackTracker did.
type NackStats struct {
	Missing   uint64 // sequence numbers seen missing
	Nacked    uint64 // NACK entries sent (a sequence number asked for twice counts twice)
	Recovered uint64 // missing packets that arrived later (retransmitted or reordered)
	GivenUp   uint64 // missing packets no longer asked for
}

type nackEntry struct {
	seq   uint16
	first time.Time // when the gap was seen
	last  time.Time // when it was last asked for
	tries int
}

const (
	// MaxNackTries is how often one packet is asked for.
	MaxNackTries = 10
	// maxMissing bounds the missing packets tracked; a larger gap is a restart.
	maxMissing = 1000
	// nackMargin is added to the round trip before asking again.
	nackMargin = 10 * time.Millisecond
	// backoffAfter is how many requests for a packet go a round trip apart before the
	// spacing doubles: at 5% loss each way a retransmission is lost one time in ten, and
	// the third request must still come back within the wait (doubling from the second
	// raised the frames given up at 5% loss from 4 to 12 a run).
	backoffAfter = 3
	// lateRing is how many given-up packets are remembered, so that a retransmission
	// arriving after the wait still measures how long retransmissions take (and lengthens
	// the wait), instead of going unseen exactly when the link is slowest.
	lateRing = 64
)

// Bounds of the wait for a missing video packet.
const (
	minRecoveryWait = 200 * time.Millisecond
	maxRecoveryWait = 500 * time.Millisecond
	// maxCongestedWait is the longest wait, when retransmissions are seen to take long
	// (a queue on the path): waiting for them costs less than a key frame on such a link.
	maxCongestedWait = 800 * time.Millisecond
)

// SetRTT sets the transport's round trip time.
func (t *NackTracker) SetRTT(rtt time.Duration) { t.rtt = rtt }

// Stats returns the tracker's counters.
func (t *NackTracker) Stats() NackStats { return t.stats }

// roundTrip is the larger of the transport's round trip and the measured retransmission time.
func (t *NackTracker) roundTrip() time.Duration { return max(t.rtt, t.resp) }

// RecoveryWait returns how long a receiver waits for a missing packet before giving its
// frame up: three round trips and a margin, so that a NACK can be answered twice (a
// retransmission may be lost too), within 200..500 ms, so that a frame that will never
// come does not hold the picture; up to 800 ms when retransmissions are measured to take
// that long.
func (t *NackTracker) RecoveryWait() time.Duration {
	d := min(max(3*t.rtt+60*time.Millisecond, minRecoveryWait), maxRecoveryWait)
	if t.resp > 0 {
		d = max(d, min(t.resp*3/2+20*time.Millisecond, maxCongestedWait))
	}
	return d
}

// Push records the arrival of packet seq at now and returns the sequence numbers to NACK
// now (valid until the next Push), oldest first.
func (t *NackTracker) Push(seq uint16, now time.Time) []uint16 {
	if !t.started {
		t.started, t.newest = true, seq
		return nil
	}
	switch d := int(int16(seq - t.newest)); {
	case d > 0 && d <= maxMissing:
		for s := t.newest + 1; s != seq; s++ {
			t.missing = append(t.missing, nackEntry{seq: s, first: now})
			t.stats.Missing++
		}
		t.newest = seq
		if n := len(t.missing) - maxMissing; n > 0 {
			t.stats.GivenUp += uint64(n)
			t.missing = append(t.missing[:0], t.missing[n:]...)
		}
	case d > maxMissing || d < -maxMissing: // a restart: forget the old stream
		t.stats.GivenUp += uint64(len(t.missing))
		t.missing = t.missing[:0]
		t.newest = seq
	case d < 0:
		found := false
		for i := range t.missing {
			if e := t.missing[i]; e.seq == seq {
				if e.tries > 0 {
					t.sample(now.Sub(e.last))
				}
				t.missing = append(t.missing[:i], t.missing[i+1:]...)
				t.stats.Recovered++
				found = true
				break
			}
		}
		if !found {
			for i := range t.late {
				if e := &t.late[i]; e.tries > 0 && e.seq == seq {
					t.sample(now.Sub(e.last))
					e.tries = 0
					break
				}
			}
		}
	}
	return t.due(now)
}

// sample folds in the time one retransmission took, from the last request for it (from the
// first, a retransmission lost on the way would count as a slow one, and at 5% loss the
// spacing grew past the wait): at once when longer (a queue is building), slowly when
// shorter.
func (t *NackTracker) sample(d time.Duration) {
	if d > t.resp {
		t.resp = d
	} else {
		t.resp -= (t.resp - d) / 8
	}
}

// due collects the entries to ask for now and drops those given up.
func (t *NackTracker) due(now time.Time) []uint16 {
	t.out = t.out[:0]
	base := t.roundTrip() + nackMargin
	// Ask while the receiver waits, and a round trip more: its wait runs on the packets'
	// timestamps, which may give a frame a little longer.
	horizon := t.RecoveryWait() + t.roundTrip()
	keep := t.missing[:0]
	for _, e := range t.missing {
		if e.tries >= MaxNackTries || now.Sub(e.first) > horizon {
			t.stats.GivenUp++
			if e.tries > 0 {
				t.late[t.lateN%lateRing] = e
				t.lateN++
			}
			continue
		}
		if e.tries == 0 || now.Sub(e.last) >= base<<min(max(e.tries-backoffAfter, 0), 4) {
			e.tries++
			e.last = now
			t.out = append(t.out, e.seq)
			t.stats.Nacked++
		}
		keep = append(keep, e)
	}
	t.missing = keep
	return t.out
}

// RTT returns the round trip time of the selected ICE candidate pair of t, or 0.
func RTT(t *webrtc.DTLSTransport) time.Duration {
	if t == nil {
		return 0
	}
	it := t.ICETransport()
	if it == nil {
		return 0
	}
	st, ok := it.GetSelectedCandidatePairStats()
	if !ok {
		return 0
	}
	return time.Duration(st.CurrentRoundTripTime * float64(time.Second))
}

// Ticks90k converts d to ticks of the 90 kHz video clock (for vp8rtp.Assembler.SetMaxDelay).
func Ticks90k(d time.Duration) uint32 { return uint32(d * 90000 / time.Second) }
