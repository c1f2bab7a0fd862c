// Package vp8rtp carries VP8 frames over RTP (RFC 7741): a Packetizer that splits encoded
// frames into packets and an Assembler that rebuilds frames from received packets,
// tolerating reordering and duplicates and detecting loss.
//
// Both types reuse their buffers and do not allocate in steady state. Neither is safe for
// concurrent use; use one per stream and goroutine.
//
// A receive loop typically looks like:
//
//	a := vp8rtp.NewAssembler()
//	for each received packet pkt {
//		frame, ts, key, ready, lost := a.Push(pkt)
//		for {
//			if lost || (ready && a.NeedKeyFrame()) {
//				requestKeyFrame() // send a PLI (rate-limited by the caller)
//			}
//			if ready && !a.NeedKeyFrame() {
//				decode(frame, ts, key) // frame is valid until the next Push or Pop
//			}
//			if !ready {
//				break
//			}
//			frame, ts, key, ready, lost = a.Pop() // more frames may have completed
//		}
//	}
package vp8rtp

import (
	"math/rand/v2"

	"github.com/pion/rtp"
)

const (
	// DefaultMTU is the default maximum RTP payload size in bytes, payload descriptor
	// included.
	DefaultMTU = 1200

	// descriptorLen is the size of the payload descriptor the Packetizer writes: X=1, S and
	// PID in the first byte, I=1 in the extension byte, then a 15-bit PictureID (M=1).
	descriptorLen = 4
)

// Packetizer splits encoded VP8 frames into RTP packets with an RFC 7741 payload descriptor
// carrying a 15-bit PictureID that increments per frame. The first packet of a frame has
// S=1 and the last has the RTP marker bit set. Sequence numbers continue across frames.
//
// A Packetizer reuses one packet and one payload buffer: the *rtp.Packet handed to the
// callback, and its Payload, are valid only during the callback. It does not allocate.
// It is not safe for concurrent use.
type Packetizer struct {
	pkt         rtp.Packet
	buf         []byte
	mtu         int
	ssrc        uint32
	payloadType uint8
	seq         uint16
	pictureID   uint16 // 15 bits
}

// NewPacketizer returns a Packetizer for the given SSRC and payload type. mtu is the maximum
// RTP payload size in bytes including the 4-byte payload descriptor; values <= 0 select
// DefaultMTU and values below 5 are raised to 5. The first sequence number and PictureID
// are random, as RFC 3550 recommends.
func NewPacketizer(ssrc uint32, payloadType uint8, mtu int) *Packetizer {
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	if mtu < descriptorLen+1 {
		mtu = descriptorLen + 1
	}
	p := &Packetizer{
		mtu:         mtu,
		buf:         make([]byte, mtu),
		ssrc:        ssrc,
		payloadType: payloadType & 0x7f,
		seq:         uint16(rand.Uint32()),
		pictureID:   uint16(rand.Uint32()) & 0x7fff,
	}
	return p
}

// SequenceNumber returns the sequence number the next packet will carry.
func (p *Packetizer) SequenceNumber() uint16 { return p.seq }

// SetSequenceNumber sets the sequence number of the next packet.
func (p *Packetizer) SetSequenceNumber(seq uint16) { p.seq = seq }

// PictureID returns the 15-bit PictureID the next frame will carry.
func (p *Packetizer) PictureID() uint16 { return p.pictureID }

// SetPictureID sets the PictureID of the next frame (only the low 15 bits are used).
func (p *Packetizer) SetPictureID(id uint16) { p.pictureID = id & 0x7fff }

// Packetize splits one encoded VP8 frame into packets of roughly equal size, all with the
// given RTP timestamp, and calls fn for each in order. It stops at the first error fn
// returns and returns it. An empty frame produces no packets. The packet and its payload
// are reused: fn must not retain them (copy or marshal them instead).
func (p *Packetizer) Packetize(frame []byte, timestamp uint32, fn func(*rtp.Packet) error) error {
	if len(frame) == 0 {
		return nil
	}
	maxData := p.mtu - descriptorLen
	n := (len(frame) + maxData - 1) / maxData
	size, extra := len(frame)/n, len(frame)%n // the first `extra` packets carry one more byte
	pid := p.pictureID
	p.pictureID = (p.pictureID + 1) & 0x7fff

	off := 0
	for i := 0; i < n; i++ {
		sz := size
		if i < extra {
			sz++
		}
		b := p.buf[:descriptorLen+sz]
		b[0] = 0x80 // X
		if i == 0 {
			b[0] |= 0x10 // S, PID 0
		}
		b[1] = 0x80 // I
		b[2] = 0x80 | byte(pid>>8)
		b[3] = byte(pid)
		copy(b[descriptorLen:], frame[off:off+sz])
		off += sz

		// Rebuild the whole header each time: fn may have modified the shared packet.
		p.pkt.Header = rtp.Header{
			Version:        2,
			Marker:         i == n-1,
			PayloadType:    p.payloadType,
			SequenceNumber: p.seq,
			Timestamp:      timestamp,
			SSRC:           p.ssrc,
		}
		p.pkt.Payload = b
		p.pkt.PaddingSize = 0
		p.seq++
		if err := fn(&p.pkt); err != nil {
			return err
		}
	}
	return nil
}
