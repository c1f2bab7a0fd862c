package rtcmedia

import "time"

// ReorderSlots is how many packets a Reorder holds ahead of a missing one (320 ms of 20 ms
// audio packets); a packet further ahead releases what is held at once.
const ReorderSlots = 16

// Bounds of a Reorder's window (ReorderWindow).
const (
	minReorderWindow = 20 * time.Millisecond
	maxReorderWindow = 100 * time.Millisecond
)

// ReorderWindow returns the wait for a missing audio packet on a link with the given
// interarrival jitter (RFC 3550): twice the jitter, within 20..100 ms. On a link whose delay
// varies by ±30 ms (jitter about 20 ms) a quarter of the packets are overtaken, and every
// one of them waited for less than 40 ms.
func ReorderWindow(jitter time.Duration) time.Duration {
	return min(max(2*jitter, minReorderWindow), maxReorderWindow)
}

// Reorder puts the packets of one incoming audio stream back in sequence: a packet that
// arrives ahead of a missing one is held for up to Window, so that a packet overtaken on the
// network is decoded in its place instead of being concealed and then thrown away. Packets
// in sequence pass at once (no added delay); a packet really lost costs Window once, then
// the held ones follow together.
//
//	ro.Push(seq, payload, now)
//	for payload, missing, ok := ro.Next(now); ok; payload, missing, ok = ro.Next(now) {
//		// conceal `missing` packets (PLC, then FEC from payload), then decode payload
//	}
//	// when nothing arrives, call Next again at Deadline()
//
// A Reorder is not safe for concurrent use. It copies payloads into buffers it reuses.
type Reorder struct {
	// Window is how long a missing packet is waited for (ReorderWindow).
	Window time.Duration

	started bool
	next    uint16 // the sequence number to release next
	held    [ReorderSlots]heldPacket
	n       int        // packets held
	over    heldPacket // a packet too far ahead to hold: releases everything before it
	lateRun int        // late packets in a row: a run means the sender restarted its numbering
	stats   ReorderStats
}

// ReorderStats counts what a Reorder did.
type ReorderStats struct {
	Filled     uint64 // packets that arrived out of order, in time to be decoded in place
	Lost       uint64 // packets given up (the caller conceals them)
	Late       uint64 // packets that arrived after being given up, dropped
	Duplicates uint64 // packets that arrived twice, dropped
}

type heldPacket struct {
	ok      bool
	seq     uint16
	at      time.Time
	payload []byte
}

func (h *heldPacket) set(seq uint16, payload []byte, now time.Time) {
	h.ok, h.seq, h.at = true, seq, now
	h.payload = append(h.payload[:0], payload...)
}

// Stats returns the counters.
func (r *Reorder) Stats() ReorderStats { return r.stats }

// Push adds packet seq, arrived at now. It reports false for a packet dropped: late (given
// up already) or a duplicate.
func (r *Reorder) Push(seq uint16, payload []byte, now time.Time) bool {
	if !r.started {
		r.started, r.next = true, seq
	}
	d := int(int16(seq - r.next))
	if d < 0 {
		// A sender that restarts its sequence numbers (or jumps by half their range) looks
		// late forever: after a run of "late" packets, start over from this one.
		if r.lateRun++; r.lateRun < maxLateRun {
			r.stats.Late++
			return false
		}
		r.Reset()
		r.started, r.next, d = true, seq, 0
	}
	r.lateRun = 0
	switch {
	case d >= ReorderSlots:
		if r.over.ok && int16(seq-r.over.seq) <= 0 {
			return false // an older jump is pending: keep it
		}
		r.over.set(seq, payload, now)
		return true
	}
	h := &r.held[seq%ReorderSlots]
	if h.ok {
		r.stats.Duplicates++
		return false
	}
	if d == 0 && r.n > 0 {
		r.stats.Filled++
	}
	h.set(seq, payload, now)
	r.n++
	return true
}

// maxLateRun is how many late packets in a row mean a restart (half a second of audio).
const maxLateRun = 25

// Reset forgets the stream's position and what is held (the counters stay).
func (r *Reorder) Reset() {
	for i := range r.held {
		r.held[i].ok = false
	}
	r.n, r.over.ok, r.started, r.lateRun = 0, false, false, 0
}

// oldest returns the arrival time of the earliest packet waiting behind a gap.
func (r *Reorder) oldest() time.Time {
	var t time.Time
	for i := range r.held {
		if h := &r.held[i]; h.ok && (t.IsZero() || h.at.Before(t)) {
			t = h.at
		}
	}
	if r.over.ok && (t.IsZero() || r.over.at.Before(t)) {
		t = r.over.at
	}
	return t
}

// Deadline returns when Next should be called if no packet arrives before: the end of the
// wait for a missing packet, or zero when nothing waits.
func (r *Reorder) Deadline() time.Time {
	if r.n == 0 && !r.over.ok {
		return time.Time{}
	}
	return r.oldest().Add(r.Window)
}

// Next returns the next packet to decode, with the number of packets given up right before
// it (missing: conceal them first), or ok false when the next packet is still awaited. The
// payload is valid until the next call of Push.
func (r *Reorder) Next(now time.Time) (payload []byte, missing int, ok bool) {
	if h := &r.held[r.next%ReorderSlots]; h.ok && h.seq == r.next {
		h.ok = false
		r.n--
		r.next++
		return h.payload, 0, true
	}
	if r.n == 0 && !r.over.ok {
		return nil, 0, false
	}
	if !r.over.ok && now.Sub(r.oldest()) < r.Window {
		return nil, 0, false
	}
	// Give the missing packets up: release the first held one after them.
	for k := 1; k < ReorderSlots; k++ {
		if h := &r.held[(r.next+uint16(k))%ReorderSlots]; h.ok && h.seq == r.next+uint16(k) {
			h.ok = false
			r.n--
			r.next += uint16(k) + 1
			r.stats.Lost += uint64(k)
			return h.payload, k, true
		}
	}
	// Nothing held: the packet far ahead.
	missing = int(r.over.seq - r.next)
	r.stats.Lost += uint64(missing)
	r.next = r.over.seq + 1
	r.over.ok = false
	return r.over.payload, missing, true
}
