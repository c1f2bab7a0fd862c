package fastrtc

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestVideoRejectsHugeFrame: a key frame declaring 16383x16383 (which libvpx would allocate
// gigabytes for) ends only that session, with a message saying why.
func TestVideoRejectsHugeFrame(t *testing.T) {
	t.Parallel()
	s, srv := newTestStream(t, VideoFunc(echoHandler), Video, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendVideo: true, recvVideo: true})
	c.connect()
	sess := s.mustSession(t, c.id)
	// VP8 payload descriptor (S=1), then a key frame header: tag, start code, 16383x16383.
	payload := append([]byte{0x10, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f}, make([]byte, 64)...)
	for i := 0; i < 3; i++ {
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true, SSRC: 9}, Payload: payload}
		if err := c.video.WriteRTP(&pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	m := c.waitMsg("error", 5*time.Second)
	if msg, _ := m["message"].(string); !strings.Contains(msg, "16383x16383") {
		t.Errorf("error %q does not say what was wrong", msg)
	}
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session still running")
	}
}

func TestPathPrefixRoot(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/", "", "//"} {
		s, err := New(VideoFunc(echoHandler), Video, SendReceive, WithPathPrefix(p))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptestServer(t, s.Handler())
		if r := postRaw(t, srv+"/webrtc/offer", "application/json", []byte("{")); r.status != 400 {
			t.Errorf("prefix %q: POST /webrtc/offer got %d %s", p, r.status, r.body)
		}
		_ = s.Close()
	}
}

// TestHandlerFactoryPanic: a panic while making a session's handler refuses that offer only.
func TestHandlerFactoryPanic(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := AudioHandlerFactory(func() AudioHandler {
		if calls.Add(1) == 1 {
			panic("no model")
		}
		return echoFactory()()
	})
	s, srv := newTestStream(t, f, Audio, SendReceive, WithConcurrencyLimit(1))
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	offer, _ := c.pc.CreateOffer(nil)
	_ = c.pc.SetLocalDescription(offer)
	r := postJSON(t, srv.URL+"/webrtc/offer", map[string]any{"sdp": offer.SDP, "type": "offer", "webrtc_id": "p1"})
	if r.status < 400 || !strings.Contains(string(r.body), "no model") {
		t.Fatalf("offer with a panicking factory: %d %s", r.status, r.body)
	}
	if n := s.Stats().Sessions; n != 0 {
		t.Fatalf("%d sessions left", n)
	}
	c2 := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c2.connect() // the slot is free
}

// eofHandler emits a long clip, then io.EOF; eof, if set, is closed when it returns io.EOF.
type eofHandler struct {
	sent, ended bool
	eof         chan struct{}
}

func (h *eofHandler) Receive(*Session, AudioFrame) error { return nil }
func (h *eofHandler) Emit(ctx context.Context, s *Session) (AudioFrame, error) {
	if h.sent {
		if !h.ended && h.eof != nil {
			close(h.eof)
		}
		h.ended = true
		return AudioFrame{}, io.EOF
	}
	h.sent = true
	return AudioFrame{SampleRate: 24000, Channels: 1, Samples: tone(24000, 400, 0.3, 24000*9/10, 0)}, nil // less than the 1 s that makes push wait
}

// TestEmitEOFClientGone: a client leaving while the last of a handler's audio is queued does
// not hold its session open.
func TestEmitEOFClientGone(t *testing.T) {
	t.Parallel()
	eof := make(chan struct{})
	f := AudioHandlerFactory(func() AudioHandler { return &eofHandler{eof: eof} })
	s, srv := newTestStream(t, f, Audio, SendReceive)
	c := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	sess := s.mustSession(t, c.id)
	select { // the clip is queued, Emit has returned io.EOF
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit was not called after the clip")
	}
	_ = c.pc.Close()
	select {
	case <-sess.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session held open by queued audio after the client left")
	}
}

// panicShutdown is an echo handler whose end-of-session hook panics.
type panicShutdown struct{ AudioHandler }

func (panicShutdown) Shutdown(*Session) { panic("shutdown failed") }

// TestEndHookPanic: a panic in an end-of-session hook (AudioShutdowner.Shutdown, a VAD's
// Close) ends only its own session: the process, the stream and the other sessions go on.
func TestEndHookPanic(t *testing.T) {
	t.Parallel()
	f := AudioHandlerFactory(func() AudioHandler { return panicShutdown{echoFactory()()} })
	s, srv := newTestStream(t, f, Audio, SendReceive)
	a := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	a.connect()
	b := newTestClient(t, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
	b.connect()
	sa := s.mustSession(t, a.id)
	sa.End("")
	select {
	case <-sa.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session with a panicking hook did not end")
	}
	if err := sa.Err(); !errors.Is(err, ErrHandlerPanic) || !strings.Contains(err.Error(), "shutdown failed") {
		t.Errorf("Err() = %v, want ErrHandlerPanic with the panic's value", err)
	}
	if _, err := s.Session(b.id); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	// A resource whose Close panics, given to the session with CloseOnEnd (as package
	// voice does with its VAD).
	vadStream, vsrv := newTestStream(t, AudioHandlerFactory(func() AudioHandler { return &ownsCloser{echoFactory()()} }), Audio, SendReceive)
	c := newTestClient(t, vsrv.URL, clientOpts{sendAudio: true, recvAudio: true})
	c.connect()
	sc := vadStream.mustSession(t, c.id)
	waitFor(t, 5*time.Second, func() bool { return vadStream.Stats().CodecContexts >= 2 }) // Opus encoder, VAD
	sc.End("")
	select {
	case <-sc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session with a panicking VAD did not end")
	}
	if st := vadStream.Stats(); st.CodecContexts != 0 {
		t.Errorf("codec contexts left: %+v", st)
	}
}

// ownsCloser gives its session a panicking closer at Start.
type ownsCloser struct{ AudioHandler }

func (ownsCloser) Start(s *Session) error { s.CloseOnEnd(panicCloser{}); return nil }

type panicCloser struct{}

func (panicCloser) Close() error { panic("vad close failed") }

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
