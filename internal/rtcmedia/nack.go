package rtcmedia

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// NackTracker finds the packets missing from one incoming RTP stream and says when to ask
// the sender for them again (RTCP generic NACK, RFC 4585). A gap is asked for as soon as a
// newer packet shows it, then again each round trip (plus a margin) while it is still
// missing, up to MaxNackTries times or NackHorizon after it was seen missing. pion's
// generator instead NACKs every gap on a fixed 100 ms tick: on a lossy link its
// retransmissions came after the receiver had given the frame up.
//
// A NackTracker is driven by the stream's reader (Push per packet) and is not safe for
// concurrent use. It does not allocate in steady state.
type NackTracker struct {
	started bool
	newest  uint16
	rtt     time.Duration
	missing []nackEntry // oldest first
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
	last  time.Time // when it was last asked for (zero: not yet)
	tries int
}

const (
	// MaxNackTries is how often one packet is asked for.
	MaxNackTries = 10
	// NackHorizon is how long a missing packet is asked for.
	NackHorizon = time.Second
	// maxMissing bounds the missing packets tracked; a larger gap is a restart.
	maxMissing = 1000
	// nackMargin is added to the round trip before asking again.
	nackMargin = 10 * time.Millisecond
)

// SetRTT sets the round trip time that spaces repeated requests for one packet.
func (t *NackTracker) SetRTT(rtt time.Duration) { t.rtt = rtt }

// Stats returns the tracker's counters.
func (t *NackTracker) Stats() NackStats { return t.stats }

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
		for i := range t.missing {
			if t.missing[i].seq == seq {
				t.missing = append(t.missing[:i], t.missing[i+1:]...)
				t.stats.Recovered++
				break
			}
		}
	}
	return t.due(now)
}

// due collects the entries to ask for now and drops those given up.
func (t *NackTracker) due(now time.Time) []uint16 {
	t.out = t.out[:0]
	again := t.rtt + nackMargin
	keep := t.missing[:0]
	for _, e := range t.missing {
		if e.tries >= MaxNackTries || now.Sub(e.first) > NackHorizon {
			t.stats.GivenUp++
			continue
		}
		if e.tries == 0 || now.Sub(e.last) >= again {
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

// Bounds of the wait for a missing video packet.
const (
	minRecoveryWait = 200 * time.Millisecond
	maxRecoveryWait = 500 * time.Millisecond
)

// RecoveryWait returns how long (in 90 kHz ticks, for vp8rtp.Assembler.SetMaxDelay) a
// receiver waits for a missing video packet before giving its frame up: three round trips
// and a margin, so that a NACK can be answered twice (a retransmission may be lost too),
// within 200..500 ms, so that a frame that will never come does not hold the picture.
func RecoveryWait(rtt time.Duration) uint32 {
	d := min(max(3*rtt+60*time.Millisecond, minRecoveryWait), maxRecoveryWait)
	return uint32(d * 90000 / time.Second)
}
