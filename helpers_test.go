package fastrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// loopbackOnly restricts a SettingEngine to 127.0.0.1, so tests never touch other networks.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// newTestStream builds a Stream restricted to loopback and serves it with httptest.
func newTestStream(t *testing.T, handler Handler, modality Modality, mode Mode, opts ...Option) (*Stream, *httptest.Server) {
	t.Helper()
	opts = append([]Option{WithSettingEngine(loopbackOnly)}, opts...)
	s, err := New(handler, modality, mode, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Stream.Close: %v", err)
		}
		if st := s.Stats(); st.Sessions != 0 || st.CodecContexts != 0 {
			t.Errorf("after Close: %+v, want no sessions and no codec contexts", st)
		}
	})
	return s, srv
}

// clientOpts says what a test client sends and receives.
type clientOpts struct {
	sendVideo, recvVideo bool
	sendAudio, recvAudio bool
	stereo               bool
}

// testClient is a real pion peer speaking the FastRTC protocol.
type testClient struct {
	t     testing.TB
	base  string
	id    string
	pc    *webrtc.PeerConnection
	dc    *webrtc.DataChannel
	video *webrtc.TrackLocalStaticRTP
	audio *webrtc.TrackLocalStaticRTP

	plis    atomic.Int32 // PLI/FIR received from the server
	msgs    chan map[string]any
	tracks  chan *webrtc.TrackRemote
	stateMu sync.Mutex
	state   webrtc.PeerConnectionState
	changed chan struct{}
}

var clientSeq struct {
	sync.Mutex
	n int
}

func newTestClient(t testing.TB, base string, o clientOpts) *testClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	loopbackOnly(&se)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	clientSeq.Lock()
	clientSeq.n++
	n := clientSeq.n
	clientSeq.Unlock()
	c := &testClient{t: t, base: base, id: fmt.Sprintf("client%d", n), pc: pc,
		msgs: make(chan map[string]any, 256), tracks: make(chan *webrtc.TrackRemote, 4), changed: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = pc.Close() })
	addTrack := func(kind webrtc.RTPCodecType, send, recv bool) *webrtc.TrackLocalStaticRTP {
		switch {
		case send:
			capab := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
			if kind == webrtc.RTPCodecTypeAudio {
				capab = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
			}
			tr, err := webrtc.NewTrackLocalStaticRTP(capab, kind.String(), "client")
			if err != nil {
				t.Fatal(err)
			}
			dir := webrtc.RTPTransceiverDirectionSendonly
			if recv {
				dir = webrtc.RTPTransceiverDirectionSendrecv
			}
			tx, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: dir})
			if err != nil {
				t.Fatal(err)
			}
			go readSenderRTCP(tx.Sender(), func() { c.plis.Add(1) }) // drain RTCP, count key frame requests
			return tr
		case recv:
			if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
	c.video = addTrack(webrtc.RTPCodecTypeVideo, o.sendVideo, o.recvVideo)
	c.audio = addTrack(webrtc.RTPCodecTypeAudio, o.sendAudio, o.recvAudio)
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { c.tracks <- tr })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		c.stateMu.Lock()
		c.state = s
		c.stateMu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	})
	dc, err := pc.CreateDataChannel("text", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.dc = dc
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		var v map[string]any
		if json.Unmarshal(m.Data, &v) == nil {
			select {
			case c.msgs <- v:
			default:
			}
		}
	})
	return c
}

// offer sends the offer and returns the server's JSON reply (an answer is applied).
func (c *testClient) offer() map[string]any {
	c.t.Helper()
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	<-gathered
	reply := postJSON(c.t, c.base+"/webrtc/offer", map[string]any{
		"sdp": c.pc.LocalDescription().SDP, "type": "offer", "webrtc_id": c.id})
	if reply.status != http.StatusOK {
		c.t.Fatalf("offer: HTTP %d %s", reply.status, reply.body)
	}
	if reply.json["type"] == "answer" {
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: reply.json["sdp"].(string)}); err != nil {
			c.t.Fatal(err)
		}
	}
	return reply.json
}

// connect offers and waits until connected.
func (c *testClient) connect() {
	c.t.Helper()
	if r := c.offer(); r["type"] != "answer" {
		c.t.Fatalf("offer refused: %v", r)
	}
	c.waitState(webrtc.PeerConnectionStateConnected, 10*time.Second)
}

func (c *testClient) waitState(want webrtc.PeerConnectionState, d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		c.stateMu.Lock()
		s := c.state
		c.stateMu.Unlock()
		if s == want {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			c.t.Fatalf("connection state %v, want %v", s, want)
		}
	}
}

// waitMsg returns the next data-channel message of the given type.
func (c *testClient) waitMsg(typ string, d time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.msgs:
			if m["type"] == typ {
				return m
			}
		case <-deadline:
			c.t.Fatalf("no %q message within %v", typ, d)
			return nil
		}
	}
}

func (c *testClient) remoteTrack(d time.Duration) *webrtc.TrackRemote {
	c.t.Helper()
	select {
	case tr := <-c.tracks:
		return tr
	case <-time.After(d):
		c.t.Fatalf("no remote track within %v", d)
		return nil
	}
}

type httpReply struct {
	status int
	body   []byte
	json   map[string]any
}

func postJSON(t testing.TB, url string, v any) httpReply {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return postRaw(t, url, "application/json", b)
}

func postRaw(t testing.TB, url, ctype string, body []byte) httpReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := httpReply{status: res.StatusCode, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

// testPattern draws frame i of a deterministic 4:2:0 test picture: a vertical luma gradient
// (so a flip is obvious), moving bars and a checkerboard, with smooth colour planes.
func testPattern(w, h, i int) *image.YCbCr {
	img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 16 + y*200/h
			if ((x+i*4)/40)%2 == 0 && (y/40)%2 == 0 {
				v += 30
			}
			img.Y[y*img.YStride+x] = uint8(v)
		}
	}
	for y := 0; y < h/2; y++ {
		for x := 0; x < w/2; x++ {
			img.Cb[y*img.CStride+x] = uint8(64 + x*128/(w/2))
			img.Cr[y*img.CStride+x] = uint8(64 + y*128/(h/2))
		}
	}
	return img
}

const webrtcConnected = webrtc.PeerConnectionStateConnected

func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
