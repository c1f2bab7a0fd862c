package vp8rtp

import (
	"github.com/pion/rtp"
)

const (
	// Window is the number of packets the Assembler can hold beyond the next expected
	// sequence number, and so the reordering distance it tolerates.
	Window = 64

	// DefaultMaxDelay is how long, in 90 kHz RTP timestamp units (100 ms), the Assembler
	// waits for a missing packet (reordered or retransmitted after a NACK) once newer media
	// has arrived, before declaring it lost.
	DefaultMaxDelay = 9000

	// MaxFrameSize bounds the size of an assembled frame; larger frames are discarded as
	// lost.
	MaxFrameSize = 8 << 20

	// resetDistance is the sequence-number jump beyond which the stream is assumed to have
	// restarted (e.g. a new sender) rather than to have lost packets.
	resetDistance = 3000

	windowMask = Window - 1
)

type packetKind uint8

const (
	kindData    packetKind = iota
	kindPadding            // empty payload (padding-only packet)
	kindBad                // malformed payload descriptor
)

// slot holds one buffered packet.
type slot struct {
	used   bool
	kind   packetKind
	start  bool // S=1 and PID=0: first packet of a frame
	marker bool
	seq    uint16
	ts     uint32
	data   []byte // VP8 payload without the descriptor; the backing array is reused
}

// AssemblerStats counts what an Assembler has seen.
type AssemblerStats struct {
	Packets    uint64 // packets pushed
	Frames     uint64 // frames returned
	Duplicates uint64 // packets already buffered
	Late       uint64 // packets older than the next expected one (arrived after being given up)
	Discarded  uint64 // packets thrown away with incomplete or unusable frames
	LossEvents uint64 // times loss was reported
}

// Assembler rebuilds VP8 frames from RTP packets (RFC 7741). It tolerates reordering within
// Window packets, ignores duplicates and handles sequence-number wrap-around. It detects
// loss: a sequence number that does not arrive in time (the reordering window overflows, or
// media newer by more than the maximum delay has arrived), a frame whose first packet lacks
// S=1, a malformed packet, and a frame whose VP8 first partition is truncated. Frames are
// returned in sequence order, never with gaps.
//
// An Assembler reuses its buffers: a returned frame is valid until the next call to Push or
// Pop. It does not allocate in steady state. It is not safe for concurrent use.
type Assembler struct {
	ring [Window]slot

	synced   bool   // head, newest and newestTS are meaningful
	started  bool   // a frame start has been consumed since the last (re)synchronisation
	head     uint16 // next sequence number to consume
	newest   uint16 // highest sequence number received
	newestTS uint32 // highest RTP timestamp received

	inFrame  bool // buf holds the beginning of a frame
	frameTS  uint32
	frameKey bool
	lastTS   uint32 // timestamp of the last frame completed, dropped or begun
	buf      []byte // frame being assembled
	out      []byte // frame last returned

	maxDelay    uint32
	needKey     bool
	lostPending bool
	discarding  bool // a loss was detected and no frame has started since
	stats       AssemblerStats
}

// NewAssembler returns an Assembler. It needs a key frame first: NeedKeyFrame reports true
// until one has been returned.
func NewAssembler() *Assembler {
	return &Assembler{maxDelay: DefaultMaxDelay, needKey: true}
}

// SetMaxDelay sets how long, in RTP timestamp units, to wait for a missing packet once newer
// media has arrived (default DefaultMaxDelay, 100 ms at 90 kHz).
func (a *Assembler) SetMaxDelay(ticks uint32) { a.maxDelay = ticks }

// NeedKeyFrame reports whether the decoder cannot use inter frames: true from the start and
// after any loss until a key frame has been returned. While it is true the caller should
// skip the frames it gets (they may reference lost data) and request a key frame (PLI).
func (a *Assembler) NeedKeyFrame() bool { return a.needKey }

// Stats returns counters of what the Assembler has seen.
func (a *Assembler) Stats() AssemblerStats { return a.stats }

// Reset forgets all buffered packets and state, as after NewAssembler (the maximum delay
// and the counters are kept).
func (a *Assembler) Reset() {
	for i := range a.ring {
		a.ring[i].used = false
	}
	a.synced, a.started, a.inFrame, a.lostPending, a.discarding = false, false, false, false, false
	a.needKey = true
}

// Push adds one packet and returns the next completed frame, if any.
//
// When a frame completes, ready is true, frame holds the VP8 frame (valid until the next
// Push or Pop), timestamp its RTP timestamp, and keyframe whether it is a key frame (P bit
// of the VP8 frame tag is 0). lost is true when loss was detected since the previous call
// that reported it (each loss is reported once); the caller should then request a key frame
// and skip frames while NeedKeyFrame is true. One packet can complete several frames (for
// example a late packet that fills a gap): call Pop until it returns ready == false to get
// them without waiting for the next packet.
func (a *Assembler) Push(pkt *rtp.Packet) (frame []byte, timestamp uint32, keyframe bool, ready bool, lost bool) {
	if pkt != nil {
		a.insert(pkt)
	}
	return a.Pop()
}

// Pop returns the next frame completed by earlier packets, if any; see Push.
func (a *Assembler) Pop() (frame []byte, timestamp uint32, keyframe bool, ready bool, lost bool) {
	ready = a.drain()
	lost = a.lostPending
	a.lostPending = false
	if ready {
		return a.out, a.lastTS, a.frameKey, true, lost
	}
	return nil, 0, false, false, lost
}

// parseDescriptor returns the length of the VP8 payload descriptor at the start of b and
// whether the packet starts a frame (S=1, PID=0). ok is false if the descriptor is malformed
// or no VP8 data follows it.
func parseDescriptor(b []byte) (n int, start bool, ok bool) {
	if len(b) < 1 {
		return 0, false, false
	}
	start = b[0]&0x10 != 0 && b[0]&0x07 == 0
	n = 1
	if b[0]&0x80 != 0 { // X: extension byte follows
		if len(b) < 2 {
			return 0, false, false
		}
		ext := b[1]
		n = 2
		if ext&0x80 != 0 { // I: PictureID, 7 or 15 bits
			if len(b) < 3 {
				return 0, false, false
			}
			if b[2]&0x80 != 0 {
				n += 2
			} else {
				n++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			n++
		}
	}
	if len(b) <= n {
		return 0, false, false
	}
	return n, start, true
}

// markLost records a loss, to be reported by the next Push or Pop. Further losses before
// the next frame start belong to the same event and are not reported again.
func (a *Assembler) markLost() {
	a.needKey = true
	if a.discarding {
		return
	}
	a.discarding = true
	a.lostPending = true
	a.stats.LossEvents++
}

// dropFrame discards the frame being assembled.
func (a *Assembler) dropFrame() {
	if a.inFrame {
		a.inFrame = false
		a.lastTS = a.frameTS
		a.stats.Discarded++
	}
}

// resync restarts from packet sequence number seq, forgetting everything buffered.
func (a *Assembler) resync(seq uint16, ts uint32) {
	if a.started {
		a.markLost()
	}
	for i := range a.ring {
		a.ring[i].used = false
	}
	a.synced, a.started, a.inFrame, a.discarding = true, false, false, false
	a.head, a.newest, a.newestTS = seq, seq, ts
	a.needKey = true
}

// skipTo moves head forward to seq, discarding what lies before it.
func (a *Assembler) skipTo(seq uint16) {
	if d := seq - a.head; d >= Window {
		for i := range a.ring {
			if a.ring[i].used {
				a.ring[i].used = false
				a.stats.Discarded++
			}
		}
	} else {
		for s := a.head; s != seq; s++ {
			if sl := &a.ring[s&windowMask]; sl.used && sl.seq == s {
				sl.used = false
				a.stats.Discarded++
			}
		}
	}
	a.head = seq
}

func (a *Assembler) insert(pkt *rtp.Packet) {
	a.stats.Packets++
	seq, ts := pkt.SequenceNumber, pkt.Timestamp
	if !a.synced {
		a.resync(seq, ts)
	}
	diff := int(int16(seq - a.head))
	switch {
	case diff > resetDistance || diff < -resetDistance:
		a.resync(seq, ts)
	case diff < 0:
		// Before the first frame start, accept earlier packets (reordered start of the
		// stream) as long as everything buffered still fits the window.
		if a.started || a.newest-seq >= Window {
			a.stats.Late++
			return
		}
		a.head = seq
	case diff >= Window:
		// Make room: whatever is still missing more than Window packets back is lost.
		if a.started {
			a.markLost()
			a.dropFrame()
		}
		a.skipTo(seq - Window + 1)
	}

	s := &a.ring[seq&windowMask]
	if s.used && s.seq == seq {
		a.stats.Duplicates++
		return
	}
	if int16(seq-a.newest) > 0 {
		a.newest = seq
	}
	if int32(ts-a.newestTS) > 0 {
		a.newestTS = ts
	}
	s.used, s.seq, s.ts, s.marker = true, seq, ts, pkt.Marker
	s.start = false
	s.data = s.data[:0]
	switch n, start, ok := parseDescriptor(pkt.Payload); {
	case len(pkt.Payload) == 0:
		s.kind = kindPadding
	case !ok:
		s.kind = kindBad
	default:
		s.kind, s.start = kindData, start
		s.data = append(s.data, pkt.Payload[n:]...)
	}
}

// findStart positions head at the first frame of the stream, discarding the packets before
// it without reporting loss, and reports whether it found one. It prefers a key frame start,
// since nothing before a key frame can be decoded; it settles for an inter frame start only
// once waiting longer cannot help: the start is older than the maximum delay compared to
// the newest media, or the reordering window is full.
func (a *Assembler) findStart() bool {
	inter := -1
	var interSeq uint16
	var interTS uint32
	for i, seq := 0, a.head; i < Window && int16(seq-a.newest) <= 0; i, seq = i+1, seq+1 {
		s := &a.ring[seq&windowMask]
		if !s.used || s.seq != seq || s.kind != kindData || !s.start {
			continue
		}
		if s.data[0]&0x01 == 0 { // key frame
			a.skipTo(seq)
			a.started = true
			return true
		}
		if inter < 0 {
			inter, interSeq, interTS = i, seq, s.ts
		}
	}
	if inter >= 0 && (int32(a.newestTS-interTS) > int32(a.maxDelay) || a.newest-a.head >= Window-1) {
		a.skipTo(interSeq)
		a.started = true
		return true
	}
	return false
}

// gapTimedOut reports whether the missing packet at head should be given up: media newer
// than the current (or last) frame by more than the maximum delay has arrived.
func (a *Assembler) gapTimedOut() bool {
	ref := a.lastTS
	if a.inFrame {
		ref = a.frameTS
	}
	return int32(a.newestTS-ref) > int32(a.maxDelay)
}

// skipGap gives up the missing packets at head: head moves to the next buffered packet.
func (a *Assembler) skipGap() {
	a.markLost()
	a.dropFrame()
	for i, seq := 0, a.head; i < Window; i, seq = i+1, seq+1 {
		if s := &a.ring[seq&windowMask]; s.used && s.seq == seq {
			a.head = seq
			return
		}
	}
	a.head = a.newest + 1
}

// drain consumes buffered packets in order until a frame completes (returning true, the
// frame in a.out) or a packet is missing.
func (a *Assembler) drain() bool {
	if !a.synced {
		return false
	}
	if !a.started && !a.findStart() {
		return false
	}
	for {
		s := &a.ring[a.head&windowMask]
		if !s.used || s.seq != a.head {
			if int16(a.head-a.newest) > 0 { // nothing buffered
				return false
			}
			if !a.gapTimedOut() {
				return false
			}
			a.skipGap()
			continue
		}
		switch s.kind {
		case kindPadding:
			s.used = false
			a.head++
			continue
		case kindBad:
			s.used = false
			a.head++
			a.markLost()
			a.dropFrame()
			a.stats.Discarded++
			continue
		}
		if a.inFrame && (s.start || s.ts != a.frameTS) {
			if s.start && s.ts != a.frameTS {
				// The frame ended without a marker but nothing is missing: it is complete.
				// The new frame's first packet stays buffered for the next call.
				if a.complete() {
					return true
				}
			} else {
				a.markLost() // a second start, or a timestamp change mid-frame
				a.dropFrame()
			}
		}
		if !a.inFrame {
			if !s.start {
				// The rest of a frame whose beginning is missing.
				s.used = false
				a.head++
				a.markLost()
				a.stats.Discarded++
				continue
			}
			a.inFrame = true
			a.discarding = false
			a.frameTS = s.ts
			a.lastTS = s.ts
			a.frameKey = s.data[0]&0x01 == 0
			a.buf = a.buf[:0]
		}
		if len(a.buf)+len(s.data) > MaxFrameSize {
			s.used = false
			a.head++
			a.markLost()
			a.dropFrame()
			continue
		}
		a.buf = append(a.buf, s.data...)
		marker := s.marker
		s.used = false
		a.head++
		if marker && a.complete() {
			return true
		}
	}
}

// complete finishes the frame in a.buf. It checks that the VP8 frame header and the first
// partition are whole; if so it moves the frame to a.out and returns true, otherwise it
// discards it as lost.
func (a *Assembler) complete() bool {
	a.inFrame = false
	a.lastTS = a.frameTS
	if !validFrame(a.buf, a.frameKey) {
		a.markLost()
		a.stats.Discarded++
		return false
	}
	a.buf, a.out = a.out, a.buf
	if a.frameKey {
		a.needKey = false
	}
	a.stats.Frames++
	return true
}

// validFrame checks the VP8 frame tag (RFC 6386 section 9.1): the first partition must lie
// within the frame, and a key frame must carry the start code and dimensions.
func validFrame(b []byte, key bool) bool {
	if len(b) < 3 {
		return false
	}
	firstPart := (int(b[0]) | int(b[1])<<8 | int(b[2])<<16) >> 5
	hdr := 3
	if key {
		hdr = 10
		if len(b) < hdr || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
			return false
		}
	}
	return hdr+firstPart <= len(b)
}
