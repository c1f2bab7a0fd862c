package fastrtc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
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
	// A hung session (a goroutine that never returns, a Close that waits forever) fails
	// this test with every goroutine's stack, not the package after its 15 minutes.
	guardDeadlock(t, 2*time.Minute)
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

// testClient is a real pion peer speaking the FastRTC protocol: a thin wrapper over package
// client that keeps the shape the tests were written against (raw RTP writers, the remote
// tracks, messages as maps).
type testClient struct {
	t    testing.TB
	base string
	o    clientOpts
	// id is the webrtc_id; a test may change it before offer or connect.
	id    string
	conn  *client.Conn
	pc    *webrtc.PeerConnection // conn's peer connection
	video rtpWriter              // the client's video track (raw RTP)
	audio rtpWriter              // the client's audio track (raw RTP)
	dc    dataChannel            // the "text" data channel

	plis   keyRequests // PLI/FIR received from the server
	msgs   chan map[string]any
	tracks chan *webrtc.TrackRemote
	wg     sync.WaitGroup // the pumps of every conn
}

// rtpWriter writes raw RTP on one of the client's tracks.
type rtpWriter struct {
	c     *testClient
	video bool
}

func (w rtpWriter) WriteRTP(p *rtp.Packet) error {
	if w.video {
		return w.c.conn.WriteVideoRTP(p)
	}
	return w.c.conn.WriteAudioRTP(p)
}

// dataChannel sends on the client's data channel.
type dataChannel struct{ c *testClient }

func (d dataChannel) SendText(text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.c.conn.SendMessage(ctx, text)
}

// keyRequests counts the key frame requests the client received.
type keyRequests struct{ c *testClient }

func (k keyRequests) Load() int32 { return int32(k.c.conn.KeyFrameRequests()) }

var clientSeq struct {
	sync.Mutex
	n int
}

func newTestClient(t testing.TB, base string, o clientOpts) *testClient {
	t.Helper()
	clientSeq.Lock()
	clientSeq.n++
	n := clientSeq.n
	clientSeq.Unlock()
	c := &testClient{t: t, base: base, o: o, id: fmt.Sprintf("client%d", n),
		msgs: make(chan map[string]any, 256), tracks: make(chan *webrtc.TrackRemote, 4)}
	c.video, c.audio, c.dc, c.plis = rtpWriter{c, true}, rtpWriter{c, false}, dataChannel{c}, keyRequests{c}
	c.newConn()
	t.Cleanup(func() {
		_ = c.conn.Close()
		c.wg.Wait()
	})
	return c
}

// newConn makes the client.Conn for c.id and starts the pumps that feed msgs and tracks.
func (c *testClient) newConn() {
	c.t.Helper()
	conn, err := client.New(c.base, &client.Options{ID: c.id, SendVideo: c.o.sendVideo, ReceiveVideo: c.o.recvVideo,
		SendAudio: c.o.sendAudio, ReceiveAudio: c.o.recvAudio, Stereo: c.o.stereo, SettingEngine: loopbackOnly})
	if err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.pc = conn, conn.PeerConnection()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			m, err := conn.Message(context.Background())
			if err != nil {
				return
			}
			var v map[string]any
			if json.Unmarshal(m.Raw, &v) == nil {
				select {
				case c.msgs <- v:
				default:
				}
			}
		}
	}()
	for _, k := range []struct {
		kind webrtc.RTPCodecType
		recv bool
	}{{webrtc.RTPCodecTypeVideo, c.o.recvVideo}, {webrtc.RTPCodecTypeAudio, c.o.recvAudio}} {
		if !k.recv {
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if tr, err := conn.RemoteTrack(context.Background(), k.kind); err == nil {
				c.tracks <- tr
			}
		}()
	}
}

// offer sends the offer and returns the server's JSON reply, as the protocol has it: the
// answer ({"type":"answer",...}, applied and connected) or the failure ({"status":"failed",
// "meta":...}).
func (c *testClient) offer() map[string]any {
	c.t.Helper()
	if c.id != c.conn.ID() { // the test changed the id
		_ = c.conn.Close()
		c.newConn()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.conn.Connect(ctx)
	var re *client.RefusedError
	switch {
	case errors.As(err, &re):
		return map[string]any{"status": "failed", "meta": re.Meta}
	case err != nil:
		c.t.Fatalf("offer: %v", err)
	}
	return map[string]any{"type": "answer", "sdp": c.pc.RemoteDescription().SDP}
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
	deadline := time.Now().Add(d)
	for {
		s := c.pc.ConnectionState()
		if s == want {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("connection state %v, want %v", s, want)
		}
		time.Sleep(10 * time.Millisecond)
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
