package client_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/media"
)

// echoServer is a minimal FastRTC-protocol server written with plain pion: POST
// /webrtc/offer answers (non-trickle), echoes every VP8 and Opus RTP packet back on a track
// of the same kind, answers data-channel messages as FastRTC does, and refuses a second
// connection with the concurrency failure JSON.
type echoServer struct {
	t   *testing.T
	api *webrtc.API
	mu  sync.Mutex
	pcs map[string]*webrtc.PeerConnection
	wg  sync.WaitGroup
}

func newEchoServer(t *testing.T) string {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	loopback(&se)
	s := &echoServer{t: t, api: webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)),
		pcs: map[string]*webrtc.PeerConnection{}}
	srv := httptest.NewServer(http.HandlerFunc(s.offer))
	t.Cleanup(func() {
		srv.Close()
		s.mu.Lock()
		for _, pc := range s.pcs {
			_ = pc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return srv.URL
}

func (s *echoServer) offer(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/webrtc/offer" {
		http.NotFound(w, r)
		return
	}
	var req struct{ SDP, WebRTCID string }
	var raw map[string]any
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.SDP, _ = raw["sdp"].(string)
	req.WebRTCID, _ = raw["webrtc_id"].(string)
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	if len(s.pcs) >= 1 {
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "failed", "meta": map[string]any{"error": "concurrency_limit_reached", "limit": 1}})
		return
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		s.mu.Unlock()
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.pcs[req.WebRTCID] = pc
	s.mu.Unlock()

	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: req.SDP}); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// One outgoing track per kind the offer has: the echo.
	out := map[webrtc.RTPCodecType]*webrtc.TrackLocalStaticRTP{}
	for _, tx := range pc.GetTransceivers() {
		capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
		if tx.Kind() == webrtc.RTPCodecTypeAudio {
			capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		}
		tr, _ := webrtc.NewTrackLocalStaticRTP(capab, tx.Kind().String(), "echo")
		sender, err := pc.AddTrack(tr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out[tx.Kind()] = tr
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		echo := out[tr.Kind()]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var p rtp.Packet
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				if p.Unmarshal(buf[:n]) == nil && echo != nil {
					_ = echo.WriteRTP(&p)
				}
			}
		}()
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { _ = dc.SendText(`{"type":"send_input","data":[]}`) })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			b, _ := json.Marshal(map[string]any{"type": "log", "data": "Server received: " + string(m.Data)})
			_ = dc.SendText(string(b))
			_ = dc.SendText(`{"type":"warning","message":"careful"}`)
		})
	})
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	<-gathered
	_ = json.NewEncoder(w).Encode(map[string]string{"sdp": pc.LocalDescription().SDP, "type": "answer"})
}

// TestPionEcho: video and audio sent through the client come back from a plain pion echo
// server with their pixels and their tone intact; data-channel messages both ways; a second
// connection is refused with a typed error.
func TestPionEcho(t *testing.T) {
	for _, trickle := range []bool{false, true} {
		name := "non-trickle"
		if trickle {
			name = "trickle"
		}
		t.Run(name, func(t *testing.T) { testPionEcho(t, trickle) })
	}
}

func testPionEcho(t *testing.T, trickle bool) {
	ctx := testCtx(t, 30*time.Second)
	base := newEchoServer(t)
	c := dial(t, ctx, base, client.Options{ID: "echo1", SendVideo: true, ReceiveVideo: true, SendAudio: true, ReceiveAudio: true,
		Stereo: true, PaceAudio: true, Trickle: trickle})
	if c.ID() != "echo1" || c.PeerConnection() == nil {
		t.Fatalf("ID %q", c.ID())
	}

	// A second connection is refused: typed error with the meta.
	_, err := client.Dial(ctx, base, &client.Options{SendVideo: true, SettingEngine: loopback})
	var re *client.RefusedError
	if !errors.As(err, &re) || !errors.Is(err, client.ErrConcurrencyLimit) || !errors.Is(err, client.ErrRefused) ||
		re.Code != client.CodeConcurrencyLimit || re.Meta["limit"] != float64(1) {
		t.Fatalf("second Dial: %v (%#v)", err, re)
	}

	// Data channel.
	if m, err := c.Message(ctx); err != nil || m.Type != "send_input" || string(m.Data) != "[]" {
		t.Fatalf("first message %+v, %v", m, err)
	}
	if err := c.SendMessage(ctx, `"hello"`); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Message(ctx); err != nil || m.Type != "log" || m.Text() != `Server received: "hello"` {
		t.Fatalf("log message %+v (%q), %v", m, m.Text(), err)
	}
	if m, err := c.Message(ctx); err != nil || m.Type != "warning" || m.Text() != "careful" || m.Message != "careful" {
		t.Fatalf("warning message %+v, %v", m, err)
	}

	// Video: 60 frames out, the echo decoded and compared with what was sent.
	go func() {
		for i := 0; i < 90 && ctx.Err() == nil; i++ {
			if err := c.SendVideo(ctx, pattern(i), uint32(i*3000)); err != nil {
				return
			}
			time.Sleep(time.Second / 30)
		}
	}()
	// Audio: a stereo 440 Hz tone, 2 s, paced by the client.
	audioSent := make(chan error, 1)
	go func() {
		s := tone(48000, 440, 0.5, 96000)
		st := make([]int16, 0, 2*len(s))
		for _, v := range s {
			st = append(st, v, v/2)
		}
		audioSent <- c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 2, Samples: st})
	}()
	good := 0
	lastIndex := -1
	for good < 20 {
		f, err := c.ReadVideo(ctx)
		if err != nil {
			t.Fatalf("ReadVideo after %d good frames: %v", good, err)
		}
		if f.Index <= lastIndex {
			t.Fatalf("Index %d after %d", f.Index, lastIndex)
		}
		lastIndex = f.Index
		if f.RTPTimestamp%3000 != 0 {
			t.Fatalf("RTP timestamp %d is not one the client sent", f.RTPTimestamp)
		}
		if p := psnr(f.Image, pattern(int(f.RTPTimestamp/3000))); p > 30 {
			good++
		} else if f.Index > 10 {
			t.Errorf("frame %d (ts %d): %.1f dB against the frame sent", f.Index, f.RTPTimestamp, p)
		}
	}
	var left, right []int16
	for len(left) < 48000 {
		a, err := c.ReadAudio(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a.SampleRate != 48000 || a.Channels != 2 {
			t.Fatalf("audio %d Hz %d ch", a.SampleRate, a.Channels)
		}
		for i := 0; i+1 < len(a.Samples); i += 2 {
			left, right = append(left, a.Samples[i]), append(right, a.Samples[i+1])
		}
	}
	// Skip the codec's start-up; the tone is there in both channels, right at half level.
	rl, rmsL := toneRatio(left[9600:], 48000, 440)
	rr, rmsR := toneRatio(right[9600:], 48000, 440)
	if rl < 0.9 || rr < 0.9 || rmsL < 0.25 || rmsL > 0.45 || rmsR < 0.12 || rmsR > 0.23 {
		t.Errorf("echoed tone: left %.2f of power at 440 Hz, RMS %.3f; right %.2f, RMS %.3f", rl, rmsL, rr, rmsR)
	}
	if err := <-audioSent; err != nil {
		t.Errorf("SendAudio: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := c.ReadVideo(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("ReadVideo after Close: %v", err)
	}
	if err := c.SendVideo(ctx, pattern(0), 0); !errors.Is(err, client.ErrClosed) {
		t.Errorf("SendVideo after Close: %v", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

// TestOptionsValidation: bad options and URLs are refused before anything starts.
func TestOptionsValidation(t *testing.T) {
	ctx := testCtx(t, 5*time.Second)
	for _, tc := range []struct {
		base string
		o    *client.Options
	}{
		{"ftp://x", nil},
		{"http://", nil},
		{"http://127.0.0.1:1/?q=1", nil},
		{"http://127.0.0.1:1", &client.Options{VideoBitrateKbps: 5}},
		{"http://127.0.0.1:1", &client.Options{VideoSpeed: 40}},
		{"http://127.0.0.1:1", &client.Options{AudioBitrateBps: 10}},
		{"http://127.0.0.1:1", &client.Options{MessageBuffer: -1}},
	} {
		if c, err := client.Dial(ctx, tc.base, tc.o); err == nil {
			_ = c.Close()
			t.Errorf("Dial(%q, %+v) succeeded", tc.base, tc.o)
		} else if err.Error()[:8] != "client: " {
			t.Errorf("error %q lacks the prefix", err)
		}
	}
	for _, o := range []*client.WebSocketOptions{{Encoding: "opus"}, {SampleRate: 44101}, {Channels: 3}} {
		if c, err := client.DialWebSocket(ctx, "http://127.0.0.1:1", o); err == nil {
			_ = c.Close()
			t.Errorf("DialWebSocket(%+v) succeeded", o)
		}
	}
	// A connection that never connects still closes cleanly; media it was not set up for
	// is ErrNoTrack.
	c, err := client.New("http://127.0.0.1:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadVideo(ctx); !errors.Is(err, client.ErrNoTrack) {
		t.Errorf("ReadVideo without ReceiveVideo: %v", err)
	}
	if err := c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: make([]int16, 960)}); !errors.Is(err, client.ErrNoTrack) {
		t.Errorf("SendAudio without SendAudio: %v", err)
	}
	if len(c.ID()) != 16 {
		t.Errorf("default ID %q", c.ID())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
