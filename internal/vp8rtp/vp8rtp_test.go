package vp8rtp

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// makeFrame returns a fake VP8 frame of the given size with a valid frame tag (and, for key
// frames, start code), so that the Assembler's partition check accepts it.
func makeFrame(rng *rand.Rand, key bool, size int) []byte {
	hdr := 3
	if key {
		hdr = 10
	}
	if size < hdr+1 {
		size = hdr + 1
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	first := (size - hdr) / 2
	tag := first<<5 | 0x10 // show_frame
	if !key {
		tag |= 1
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if key {
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a
	}
	return b
}

// clonePacket deep-copies a packet handed to a Packetize callback.
func clonePacket(p *rtp.Packet) *rtp.Packet {
	c := *p
	c.Payload = append([]byte(nil), p.Payload...)
	return &c
}

type testFrame struct {
	data []byte
	ts   uint32
	key  bool
}

// stream builds n frames (key frames at the given indices) and their packets.
func stream(t testing.TB, rng *rand.Rand, n int, keys map[int]bool, seq uint16, mtu int) ([]testFrame, []*rtp.Packet) {
	p := NewPacketizer(1234, 96, mtu)
	p.SetSequenceNumber(seq)
	var frames []testFrame
	var pkts []*rtp.Packet
	for i := 0; i < n; i++ {
		size := 600 + rng.IntN(3400)
		if keys[i] {
			size += 3000
		}
		f := testFrame{data: makeFrame(rng, keys[i], size), ts: uint32(i * 3000), key: keys[i]}
		frames = append(frames, f)
		if err := p.Packetize(f.data, f.ts, func(pkt *rtp.Packet) error {
			pkts = append(pkts, clonePacket(pkt))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return frames, pkts
}

type result struct {
	frames   []testFrame
	lost     int
	skipped  int // frames returned while NeedKeyFrame was true
	needKeys []bool
}

// feed pushes packets and collects every frame, popping until nothing is ready.
func feed(a *Assembler, pkts []*rtp.Packet) result {
	var r result
	take := func(frame []byte, ts uint32, key, ready, lost bool) bool {
		if lost {
			r.lost++
		}
		if ready {
			if a.NeedKeyFrame() {
				r.skipped++
			}
			r.frames = append(r.frames, testFrame{append([]byte(nil), frame...), ts, key})
			r.needKeys = append(r.needKeys, a.NeedKeyFrame())
		}
		return ready
	}
	for _, p := range pkts {
		if take(a.Push(p)) {
			for take(a.Pop()) {
			}
		}
	}
	return r
}

func checkFrames(t *testing.T, got, want []testFrame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ts != want[i].ts || got[i].key != want[i].key || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("frame %d differs (ts %d/%d key %v/%v len %d/%d)", i, got[i].ts, want[i].ts,
				got[i].key, want[i].key, len(got[i].data), len(want[i].data))
		}
	}
}

func TestPacketizerFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	p := NewPacketizer(0xdeadbeef, 96, 100)
	p.SetSequenceNumber(65534)
	p.SetPictureID(0x7ffe)
	var all [][]*rtp.Packet
	for i := 0; i < 3; i++ {
		frame := makeFrame(rng, i == 0, 250)
		var pkts []*rtp.Packet
		if err := p.Packetize(frame, 90000, func(pkt *rtp.Packet) error {
			pkts = append(pkts, clonePacket(pkt))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// 250 bytes over 96-byte chunks: 3 packets of 84, 83, 83 bytes.
		if len(pkts) != 3 {
			t.Fatalf("%d packets", len(pkts))
		}
		var data []byte
		for j, pkt := range pkts {
			pl := pkt.Payload
			if len(pl) > 100 || pkt.Version != 2 || pkt.SSRC != 0xdeadbeef || pkt.PayloadType != 96 || pkt.Timestamp != 90000 {
				t.Fatalf("bad packet %+v", pkt.Header)
			}
			if pkt.Marker != (j == 2) {
				t.Fatalf("marker on packet %d", j)
			}
			wantB0 := byte(0x80)
			if j == 0 {
				wantB0 |= 0x10
			}
			pid := uint16(pl[2]&0x7f)<<8 | uint16(pl[3])
			if pl[0] != wantB0 || pl[1] != 0x80 || pl[2]&0x80 == 0 || pid != (0x7ffe+uint16(i))&0x7fff {
				t.Fatalf("frame %d packet %d: descriptor % x", i, j, pl[:4])
			}
			// pion's depacketizer agrees.
			var vp codecs.VP8Packet
			d, err := vp.Unmarshal(pl)
			if err != nil || vp.PictureID != pid || vp.S != pl[0]>>4&1 {
				t.Fatalf("pion: %v %+v", err, vp)
			}
			data = append(data, d...)
		}
		if len(pkts[0].Payload)-4 != 84 || len(pkts[2].Payload)-4 != 83 {
			t.Fatalf("unbalanced split %d %d", len(pkts[0].Payload), len(pkts[2].Payload))
		}
		if !bytes.Equal(data, frame) {
			t.Fatal("payload differs")
		}
		all = append(all, pkts)
	}
	// Sequence numbers continue across frames and wrap.
	want := uint16(65534)
	for _, pkts := range all {
		for _, pkt := range pkts {
			if pkt.SequenceNumber != want {
				t.Fatalf("seq %d want %d", pkt.SequenceNumber, want)
			}
			want++
		}
	}
	if p.PictureID() != 1 {
		t.Fatalf("picture id %d", p.PictureID())
	}
	// Errors stop packetization; empty frames produce nothing.
	boom := errors.New("boom")
	n := 0
	if err := p.Packetize(make([]byte, 1000), 0, func(*rtp.Packet) error { n++; return boom }); !errors.Is(err, boom) || n != 1 {
		t.Fatalf("err %v after %d packets", err, n)
	}
	if err := p.Packetize(nil, 0, func(*rtp.Packet) error { t.Fatal("called"); return nil }); err != nil {
		t.Fatal(err)
	}
	if NewPacketizer(1, 96, 0).mtu != DefaultMTU || NewPacketizer(1, 96, 1).mtu != 5 {
		t.Fatal("mtu defaults")
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	frames, pkts := stream(t, rng, 100, map[int]bool{0: true, 50: true}, 100, 0)
	a := NewAssembler()
	if !a.NeedKeyFrame() {
		t.Fatal("a new assembler needs a key frame")
	}
	r := feed(a, pkts)
	checkFrames(t, r.frames, frames)
	if r.lost != 0 || r.skipped != 0 || a.NeedKeyFrame() {
		t.Fatalf("lost %d skipped %d", r.lost, r.skipped)
	}
	st := a.Stats()
	if st.Frames != 100 || st.Packets != uint64(len(pkts)) || st.LossEvents != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWrapAround(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	frames, pkts := stream(t, rng, 40, map[int]bool{0: true}, 65500, 300)
	if pkts[0].SequenceNumber < 65000 || pkts[len(pkts)-1].SequenceNumber > 1000 {
		t.Fatal("stream does not wrap")
	}
	// Reorder across the wrap point too.
	shuffleWithin(rng, pkts, 8)
	r := feed(NewAssembler(), pkts)
	checkFrames(t, r.frames, frames)
	if r.lost != 0 {
		t.Fatalf("lost %d", r.lost)
	}
}

// shuffleWithin reorders packets randomly, each by less than dist positions.
func shuffleWithin(rng *rand.Rand, pkts []*rtp.Packet, dist int) {
	keys := make(map[*rtp.Packet]float64, len(pkts))
	for i, p := range pkts {
		keys[p] = float64(i) + rng.Float64()*float64(dist)
	}
	sort.SliceStable(pkts, func(i, j int) bool { return keys[pkts[i]] < keys[pkts[j]] })
}

func TestReorder(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, dist := range []int{2, 5, 20, 60} {
		frames, pkts := stream(t, rng, 200, map[int]bool{0: true}, uint16(rng.Uint32()), 500)
		shuffleWithin(rng, pkts, dist)
		a := NewAssembler()
		a.SetMaxDelay(1 << 30) // rely on the window only
		r := feed(a, pkts)
		checkFrames(t, r.frames, frames)
		if r.lost != 0 {
			t.Fatalf("dist %d: lost %d", dist, r.lost)
		}
	}
}

func TestReorderedStart(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	frames, pkts := stream(t, rng, 10, map[int]bool{0: true}, 7, 200)
	pkts[0], pkts[2] = pkts[2], pkts[0] // the key frame's first packet arrives third
	r := feed(NewAssembler(), pkts)
	checkFrames(t, r.frames, frames)
	if r.lost != 0 {
		t.Fatalf("lost %d", r.lost)
	}
}

func TestStartWithoutKeyFrame(t *testing.T) {
	// A stream joined without its key frame: frames come out once waiting for a key frame
	// start cannot help any more, all flagged by NeedKeyFrame until the key frame.
	rng := rand.New(rand.NewPCG(18, 18))
	frames, pkts := stream(t, rng, 15, map[int]bool{10: true}, 3, 300)
	a := NewAssembler()
	r := feed(a, pkts)
	checkFrames(t, r.frames, frames)
	for i, need := range r.needKeys {
		if need != (i < 10) {
			t.Fatalf("frame %d NeedKeyFrame %v", i, need)
		}
	}
	if r.lost != 0 {
		t.Fatalf("lost %d", r.lost)
	}
}

func TestPopSinglePacketFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	frames, pkts := stream(t, rng, 4, map[int]bool{0: true}, 10, 100000)
	if len(pkts) != 4 {
		t.Fatalf("%d packets", len(pkts))
	}
	a := NewAssembler()
	if _, _, _, ready, _ := a.Push(pkts[0]); !ready {
		t.Fatal("frame 0 not ready")
	}
	if _, _, _, ready, _ := a.Push(pkts[2]); ready {
		t.Fatal("frame 2 returned before frame 1")
	}
	f, ts, _, ready, lost := a.Push(pkts[1])
	if !ready || lost || ts != frames[1].ts || !bytes.Equal(f, frames[1].data) {
		t.Fatal("frame 1")
	}
	f, ts, _, ready, lost = a.Pop()
	if !ready || lost || ts != frames[2].ts || !bytes.Equal(f, frames[2].data) {
		t.Fatal("frame 2 not popped")
	}
	if _, _, _, ready, _ = a.Pop(); ready {
		t.Fatal("spurious frame")
	}
}

func TestDuplicates(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	frames, pkts := stream(t, rng, 50, map[int]bool{0: true}, 65000, 400)
	var dup []*rtp.Packet
	for i, p := range pkts {
		dup = append(dup, p, p)
		if i > 3 {
			dup = append(dup, pkts[i-3]) // a late duplicate of a consumed packet
		}
	}
	a := NewAssembler()
	r := feed(a, dup)
	checkFrames(t, r.frames, frames)
	if r.lost != 0 {
		t.Fatalf("lost %d", r.lost)
	}
	if st := a.Stats(); st.Duplicates+st.Late != uint64(len(dup)-len(pkts)) {
		t.Fatalf("stats %+v", st)
	}
}

// framePackets returns, for each frame, the index of its first packet.
func frameStarts(pkts []*rtp.Packet) []int {
	var idx []int
	for i, p := range pkts {
		if p.Payload[0]&0x10 != 0 {
			idx = append(idx, i)
		}
	}
	return idx
}

func TestDroppedPacket(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, which := range []string{"first", "middle", "last", "whole"} {
		keys := map[int]bool{0: true, 20: true}
		frames, pkts := stream(t, rng, 40, keys, 65530, 100)
		starts := frameStarts(pkts)
		const victim = 10 // frame losing data
		first, next := starts[victim], starts[victim+1]
		var drop []int
		switch which {
		case "first":
			drop = []int{first}
		case "middle":
			drop = []int{(first + next) / 2}
		case "last":
			drop = []int{next - 1}
		case "whole":
			for i := first; i < next; i++ {
				drop = append(drop, i)
			}
		}
		if next-first < 3 {
			t.Fatalf("frame too small for the test")
		}
		var sent []*rtp.Packet
		for i, p := range pkts {
			if len(drop) > 0 && i >= drop[0] && i <= drop[len(drop)-1] {
				continue
			}
			sent = append(sent, p)
		}
		a := NewAssembler()
		r := feed(a, sent)
		if r.lost != 1 {
			t.Fatalf("%s: lost reported %d times, want 1", which, r.lost)
		}
		// Every frame but the victim arrives; frames 11..19 come while a key frame is
		// needed, and the key frame 20 clears the state.
		want := append(append([]testFrame(nil), frames[:victim]...), frames[victim+1:]...)
		checkFrames(t, r.frames, want)
		for i, need := range r.needKeys {
			frame := i
			if i >= victim {
				frame++
			}
			if need != (frame > victim && frame < 20) {
				t.Fatalf("%s: frame %d NeedKeyFrame %v", which, frame, need)
			}
		}
		if a.NeedKeyFrame() {
			t.Fatalf("%s: still needs a key frame", which)
		}
	}
}

func TestLossByWindow(t *testing.T) {
	// With an unlimited delay a gap is given up only when the window overflows: then only
	// the frame with the gap is lost.
	rng := rand.New(rand.NewPCG(9, 9))
	frames, pkts := stream(t, rng, 120, map[int]bool{0: true}, 0, 200)
	starts := frameStarts(pkts)
	gap := starts[5] + 1
	sent := append(append([]*rtp.Packet(nil), pkts[:gap]...), pkts[gap+1:]...)
	a := NewAssembler()
	a.SetMaxDelay(1 << 30)
	var r result
	for i, p := range sent {
		r2 := feed(a, []*rtp.Packet{p})
		r.lost += r2.lost
		r.frames = append(r.frames, r2.frames...)
		if r2.lost > 0 && i-gap < Window-1 {
			t.Fatalf("loss reported %d packets after the gap", i-gap)
		}
	}
	if r.lost != 1 {
		t.Fatalf("lost %d", r.lost)
	}
	checkFrames(t, r.frames, append(append([]testFrame(nil), frames[:5]...), frames[6:]...))
	if !a.NeedKeyFrame() {
		t.Fatal("no key frame since the loss")
	}
}

func TestMissingStartAndCorruptPartition(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	frames, pkts := stream(t, rng, 10, map[int]bool{0: true}, 0, 200)
	starts := frameStarts(pkts)
	// Clear S on frame 3's first packet: the frame has no start.
	pkts[starts[3]].Payload[0] &^= 0x10
	// Make frame 6's first partition claim more bytes than the frame holds.
	pl := pkts[starts[6]].Payload
	pl[4], pl[5], pl[6] = 0xff|pl[4]&1, 0xff, 0xff
	r := feed(NewAssembler(), pkts)
	if r.lost != 2 {
		t.Fatalf("lost %d", r.lost)
	}
	var want []testFrame
	for i, f := range frames {
		if i != 3 && i != 6 {
			want = append(want, f)
		}
	}
	checkFrames(t, r.frames, want)
}

func TestPaddingAndMalformed(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	frames, pkts := stream(t, rng, 6, map[int]bool{0: true}, 0, 200)
	// Insert padding-only packets between frames by renumbering.
	var out []*rtp.Packet
	seq := uint16(0)
	for i, p := range pkts {
		c := *p
		c.SequenceNumber = seq
		seq++
		out = append(out, &c)
		if p.Marker && i < len(pkts)-1 {
			out = append(out, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: p.Timestamp, Padding: true, PaddingSize: 200}})
			seq++
		}
	}
	r := feed(NewAssembler(), out)
	checkFrames(t, r.frames, frames)
	if r.lost != 0 {
		t.Fatalf("lost %d", r.lost)
	}
	// A malformed descriptor loses its frame.
	starts := frameStarts(pkts)
	bad := *pkts[starts[2]+1]
	bad.Payload = []byte{0x80} // X set but no extension byte
	pkts[starts[2]+1] = &bad
	r = feed(NewAssembler(), pkts)
	if r.lost != 1 || len(r.frames) != len(frames)-1 {
		t.Fatalf("malformed: lost %d frames %d", r.lost, len(r.frames))
	}
}

func TestStreamRestart(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	framesA, pktsA := stream(t, rng, 5, map[int]bool{0: true}, 100, 300)
	framesB, pktsB := stream(t, rng, 5, map[int]bool{0: true}, 40000, 300)
	r := feed(NewAssembler(), append(pktsA, pktsB...))
	checkFrames(t, r.frames, append(framesA, framesB...))
}

func TestPionInterop(t *testing.T) {
	// Packets from pion's VP8 payloader (1-byte descriptor) assemble too.
	rng := rand.New(rand.NewPCG(13, 13))
	pay := &codecs.VP8Payloader{}
	var pkts []*rtp.Packet
	var frames []testFrame
	seq := uint16(500)
	for i := 0; i < 10; i++ {
		f := testFrame{makeFrame(rng, i == 0, 3000), uint32(i * 3000), i == 0}
		frames = append(frames, f)
		pls := pay.Payload(1200, f.data)
		for j, pl := range pls {
			pkts = append(pkts, &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: f.ts, Marker: j == len(pls)-1}, Payload: pl})
			seq++
		}
	}
	r := feed(NewAssembler(), pkts)
	checkFrames(t, r.frames, frames)
}

func TestAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	frame := makeFrame(rng, false, 6000)
	key := makeFrame(rng, true, 6000)
	p := NewPacketizer(1, 96, 0)
	a := NewAssembler()
	ts := uint32(0)
	fn := func(pkt *rtp.Packet) error {
		if _, _, _, ready, lost := a.Push(pkt); lost || (pkt.Marker && !ready) {
			t.Fatal("assembly failed")
		}
		return nil
	}
	run := func() {
		ts += 3000
		if err := p.Packetize(frame, ts, fn); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Packetize(key, ts, fn); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ { // warm up every ring slot
		run()
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

// FuzzAssembler feeds arbitrary packets; the Assembler must never panic and must only
// return frames that pass its own validity check.
func FuzzAssembler(f *testing.F) {
	rng := rand.New(rand.NewPCG(15, 15))
	_, pkts := stream(f, rng, 3, map[int]bool{0: true}, 65534, 60)
	var seed []byte
	for _, p := range pkts {
		seed = append(seed, byte(p.SequenceNumber>>8), byte(p.SequenceNumber), byte(p.Timestamp>>16), byte(p.Timestamp>>8), 0, byte(len(p.Payload)))
		if p.Marker {
			seed[len(seed)-2] = 1
		}
		seed = append(seed, p.Payload...)
	}
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 0, 1, 3, 0x90, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := NewAssembler()
		a.SetMaxDelay(uint32(len(data)) * 100)
		for len(data) >= 6 {
			h := data[:6]
			n := int(h[5])
			data = data[6:]
			if n > len(data) {
				n = len(data)
			}
			pkt := &rtp.Packet{
				Header: rtp.Header{
					Version:        2,
					SequenceNumber: uint16(h[0])<<8 | uint16(h[1]),
					Timestamp:      uint32(h[2])<<16 | uint32(h[3])<<8,
					Marker:         h[4]&1 != 0,
				},
				Payload: data[:n],
			}
			data = data[n:]
			frame, _, key, ready, _ := a.Push(pkt)
			for ready {
				if !validFrame(frame, key) || len(frame) > MaxFrameSize {
					t.Fatalf("invalid frame returned")
				}
				frame, _, key, ready, _ = a.Pop()
			}
		}
	})
}

func BenchmarkPacketize(b *testing.B) {
	rng := rand.New(rand.NewPCG(16, 16))
	frame := makeFrame(rng, false, 6250) // 1.5 Mbit/s at 30 fps
	p := NewPacketizer(1, 96, 0)
	n := 0
	fn := func(*rtp.Packet) error { n++; return nil }
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	ts := uint32(0)
	for b.Loop() {
		ts += 3000
		if err := p.Packetize(frame, ts, fn); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAssemble(b *testing.B) {
	rng := rand.New(rand.NewPCG(17, 17))
	frame := makeFrame(rng, false, 6250)
	p := NewPacketizer(1, 96, 0)
	// Pre-packetize a long run of frames so that only Push is measured.
	const frames = 1024
	var pkts [][]*rtp.Packet
	for i := 0; i < frames; i++ {
		var fp []*rtp.Packet
		if err := p.Packetize(frame, uint32(i*3000), func(pkt *rtp.Packet) error {
			fp = append(fp, clonePacket(pkt))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		pkts = append(pkts, fp)
	}
	a := NewAssembler()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	i := 0
	for b.Loop() {
		fp := pkts[i%frames]
		if i%frames == 0 && i > 0 {
			// Continue the sequence: shift the next round's numbers and timestamps.
			for _, f := range pkts {
				for _, pk := range f {
					pk.SequenceNumber += uint16(len(pkts) * len(pkts[0]))
					pk.Timestamp += uint32(frames * 3000)
				}
			}
		}
		for _, pk := range fp {
			a.Push(pk)
		}
		i++
	}
}
