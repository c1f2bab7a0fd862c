package voice

// The test harness of package voice: real servers (httptest, loopback-only ICE) and real
// clients (package client, gorilla/websocket for Twilio), built on package fastrtc's public
// API only, as any user of it could. Media is checked as media: Opus decoded, tones measured.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/mulaw"
	"github.com/fastrtc-go/fastrtc/internal/opus"
)

// TestMain fails the package if any goroutine outlives the tests: every session's goroutines
// (pion's included), every client's and every reply's must end with them. Each test's cleanup
// also checks that its Stream has no session and no codec context left.
//
// The tests are bound by real time (speech played at 20 ms a frame, replies paced), not by
// CPU: run two at a time (go test's default on 2 cores) they took 71 s with -race, the CPU
// mostly idle; eight at a time, 23 s. So eight is this package's default; -parallel wins.
func TestMain(m *testing.M) {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// frameDuration is the media frame of every transport: 20 ms.
const frameDuration = 20 * time.Millisecond

// loopbackOnly restricts a SettingEngine to 127.0.0.1, so tests never touch other networks.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// newTestStream builds a Stream restricted to loopback and serves it with httptest. Its
// cleanup closes both and checks that no session and no codec context (Opus, VAD) is left.
func newTestStream(t testing.TB, handler fastrtc.Handler, modality fastrtc.Modality, mode fastrtc.Mode, opts ...fastrtc.Option) (*fastrtc.Stream, *httptest.Server) {
	t.Helper()
	guardDeadlock(t, 2*time.Minute)
	opts = append([]fastrtc.Option{fastrtc.WithSettingEngine(loopbackOnly)}, opts...)
	s, err := fastrtc.New(handler, modality, mode, opts...)
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

// guardDeadlock turns a hung test into a fast, readable failure: if the test (and the
// cleanups registered after this call) still runs d after it, every goroutine's stack goes to
// stderr and the binary panics with the test's name, instead of the package timeout's dump
// much later. d is shortened to end 5 s before the -timeout deadline when that comes first.
func guardDeadlock(t testing.TB, d time.Duration) {
	t.Helper()
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := dl.Deadline(); ok {
			if left := time.Until(deadline) - 5*time.Second; left > 0 && left < d {
				d = left
			}
		}
	}
	var (
		mu   sync.Mutex
		done bool
	)
	name := t.Name()
	timer := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		buf := make([]byte, 1<<20)
		for {
			n := runtime.Stack(buf, true)
			if n < len(buf) {
				buf = buf[:n]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		fmt.Fprintf(os.Stderr, "\n=== guardDeadlock: %s still running after %v; all goroutines:\n%s\n", name, d, buf)
		t.Errorf("guardDeadlock: still running after %v (deadlock or hang; goroutine stacks on stderr)", d)
		panic(fmt.Sprintf("guardDeadlock: %s still running after %v (goroutine stacks above)", name, d))
	})
	t.Cleanup(func() {
		mu.Lock()
		done = true
		mu.Unlock()
		timer.Stop()
	})
}

// clientOpts says what a test client sends and receives.
type clientOpts struct {
	sendAudio, recvAudio bool
}

// testClient is a WebRTC client of package client (a real pion peer on loopback) with what
// the tests read: the data channel's messages as maps, and the server's audio track.
type testClient struct {
	t    testing.TB
	id   string // the webrtc_id
	conn *client.Conn
	msgs chan map[string]any // data-channel messages, in order (dropped when 256 wait)
	wg   sync.WaitGroup      // the client's goroutines: message pump, audio capture
}

// newTestClient makes a client for the stream at base, not connected yet (its id is known:
// a test may name it in requests before the offer). The test's cleanup closes it.
func newTestClient(t testing.TB, base string, o clientOpts) *testClient {
	t.Helper()
	conn, err := client.New(base, &client.Options{SendAudio: o.sendAudio, ReceiveAudio: o.recvAudio, SettingEngine: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{t: t, id: conn.ID(), conn: conn, msgs: make(chan map[string]any, 256)}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			m, err := conn.Message(context.Background())
			if err != nil {
				return // closed
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
	t.Cleanup(func() {
		_ = conn.Close()
		c.wg.Wait()
	})
	return c
}

// connect offers and waits until the peer connection is connected.
func (c *testClient) connect() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.conn.Connect(ctx); err != nil {
		c.t.Fatalf("connect: %v", err)
	}
}

// sendText sends text on the data channel.
func (c *testClient) sendText(text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.conn.SendMessage(ctx, text)
}

// waitMsg returns the next data-channel message of the given type, skipping others.
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

// sendAudio Opus-encodes pcm (48 kHz mono) in 20 ms packets sent as raw RTP on the client's
// audio track, in real time: packet i leaves at start + i*20 ms (after a stall of the
// process, the late packets go at once, as a real client's would, so the audio keeps to the
// wall clock the tests' timings assume). drop, if set, says which packets are not sent
// (loss). done is closed when the last packet went (or ctx ended).
func (c *testClient) sendAudio(ctx context.Context, pcm []int16, drop func(i int) bool) (done <-chan struct{}) {
	c.t.Helper()
	enc, err := opus.NewEncoder(opus.DefaultEncoderConfig())
	if err != nil {
		c.t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer enc.Close()
		buf := make([]byte, 1500)
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 42}}
		start := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := 0; (i+1)*960 <= len(pcm); i++ {
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
			n, err := enc.Encode(pcm[i*960:(i+1)*960], buf)
			if err != nil {
				return
			}
			pkt.SequenceNumber, pkt.Timestamp, pkt.Payload = uint16(i), uint32(i*960), buf[:n]
			if drop == nil || !drop(i) {
				_ = c.conn.WriteAudioRTP(&pkt)
			}
			timer.Reset(time.Until(start.Add(time.Duration(i+1) * frameDuration)))
		}
	}()
	return ch
}

// audioCapture is the server's audio as the client decoded it (48 kHz mono), packet by
// packet, with the packets' arrival times.
type audioCapture struct {
	mu      sync.Mutex
	pcm     []int16
	packets int
	first   time.Time
	last    time.Time
}

// snapshot returns the audio so far, the packet count, and the time from the first packet's
// arrival to the last's.
func (a *audioCapture) snapshot() ([]int16, int, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]int16(nil), a.pcm...), a.packets, a.last.Sub(a.first)
}

// quiet reports whether no packet arrived for d (true before the first packet too).
func (a *audioCapture) quiet(d time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.packets == 0 || time.Since(a.last) >= d
}

// receiveAudio waits up to d for the server's audio track (the client sees it with its first
// packet) and decodes it, as it comes, until the connection closes.
func (c *testClient) receiveAudio(d time.Duration) *audioCapture {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tr, err := c.conn.RemoteTrack(ctx, webrtc.RTPCodecTypeAudio)
	if err != nil {
		c.t.Fatalf("no remote audio track within %v: %v", d, err)
	}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		c.t.Fatal(err)
	}
	a := &audioCapture{}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer dec.Close()
		buf := make([]byte, 1500)
		pcm := make([]int16, 5760)
		var pkt rtp.Packet
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if pkt.Unmarshal(buf[:n]) != nil {
				continue
			}
			k, err := dec.Decode(pkt.Payload, pcm)
			if err != nil {
				continue
			}
			now := time.Now()
			a.mu.Lock()
			if a.packets == 0 {
				a.first = now
			}
			a.last = now
			a.packets++
			a.pcm = append(a.pcm, pcm[:k]...)
			a.mu.Unlock()
		}
	}()
	return a
}

// heard waits until the stream's handlers were given d of audio (Metrics.AudioIn, which
// counts each frame as the handler gets it): the audio a client sent was all taken.
func heard(t testing.TB, s *fastrtc.Stream, d time.Duration) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool { return s.Stats().AudioIn >= d })
}

// pcmDuration is the length of n samples of 48 kHz mono in whole 20 ms frames.
func pcmDuration(n int) time.Duration { return time.Duration(n/960) * frameDuration }

// waitFor polls cond until it holds, failing the test if d passes first.
func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	if !eventually(d, cond) {
		t.Fatalf("condition not met within %v", d)
	}
}

// eventually polls cond until it holds or d passes, and says whether it held: for waits
// whose failure the test's assertions then describe.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// httpReply is an HTTP response, its body and the body's JSON object (if it is one).
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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	r := httpReply{status: res.StatusCode, body: body}
	_ = json.Unmarshal(body, &r.json)
	return r
}

// waitSessions waits until the stream has n live sessions.
func waitSessions(t testing.TB, s *fastrtc.Stream, n int) {
	t.Helper()
	if !eventually(5*time.Second, func() bool { return s.Stats().Sessions == n }) {
		t.Fatalf("%d sessions, want %d", s.Stats().Sessions, n)
	}
}

// liveSession opens a session on a stream of its own (a WebSocket client, the lightest
// transport) and returns it: for unit tests of code that needs a real *fastrtc.Session.
func liveSession(t testing.TB) *fastrtc.Session {
	t.Helper()
	quiet := fastrtc.AudioFunc(func(*fastrtc.Session, fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		return fastrtc.AudioFrame{}, nil
	})
	s, srv := newTestStream(t, quiet, fastrtc.Audio, fastrtc.SendReceive)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialWebSocket(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	sess, err := s.Session(c.ID())
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// tone returns n samples of a sine at freq Hz, amplitude amp (0..1), at rate, starting at
// sample phase.
func tone(rate int, freq, amp float64, n int, phase int) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(2*math.Pi*freq*float64(i+phase)/float64(rate)))
	}
	return out
}

// goertzelPower returns the power of x at freq relative to its total power (0..1).
func goertzelPower(x []int16, rate int, freq float64) float64 {
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, total float64
	for _, v := range x {
		f := float64(v)
		s := f + coeff*s1 - s2
		s2, s1 = s1, s
		total += f * f
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	return p / (total * float64(len(x)) / 2)
}

// zeroCrossFreq estimates the frequency of a tone from its rising zero crossings.
func zeroCrossFreq(x []int16, rate int) float64 {
	first, last, n := -1, -1, 0
	for i := 1; i < len(x); i++ {
		if x[i-1] < 0 && x[i] >= 0 {
			if first < 0 {
				first = i
			} else {
				n++
			}
			last = i
		}
	}
	if n == 0 {
		return 0
	}
	return float64(n) * float64(rate) / float64(last-first)
}

// The Twilio Media Streams route has no Go client (package client speaks FastRTC's
// protocols): wsClient is a raw gorilla/websocket client of it.

// wsMsg is a message a wsClient received.
type wsMsg struct {
	at  time.Time
	raw []byte
	m   map[string]any // nil if not a JSON object
}

func (m wsMsg) str(key string) string { s, _ := m.m[key].(string); return s }

// wsClient is a WebSocket client. A reader goroutine queues everything the server sends
// (unbounded, so it never blocks) and records why the connection ended.
type wsClient struct {
	t      testing.TB
	conn   *websocket.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	queue  []wsMsg
	notify chan struct{}
	done   chan struct{}
	err    error // the read error, once done is closed
}

func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// dialWS connects to url; the test's cleanup closes the connection and waits for its reader.
func dialWS(t testing.TB, url string) *wsClient {
	t.Helper()
	conn, res, err := websocket.DefaultDialer.Dial(url, nil)
	if res != nil && res.Body != nil {
		res.Body.Close()
	}
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &wsClient{t: t, conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() {
		_ = conn.Close()
		<-c.done
	})
	go c.readLoop()
	return c
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		m := wsMsg{at: time.Now(), raw: b}
		_ = json.Unmarshal(b, &m.m)
		c.mu.Lock()
		c.queue = append(c.queue, m)
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

// send sends v as a JSON text message.
func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Errorf("send: %v", err)
	}
}

// next returns the next message, or false if none came within d or the connection ended.
func (c *wsClient) next(d time.Duration) (wsMsg, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			m := c.queue[0]
			c.queue = c.queue[1:]
			c.mu.Unlock()
			return m, true
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-c.done:
			c.mu.Lock()
			n := len(c.queue)
			c.mu.Unlock()
			if n == 0 {
				return wsMsg{}, false
			}
		case <-deadline.C:
			return wsMsg{}, false
		}
	}
}

// waitClosed waits until the server closed the connection and returns its close frame.
func (c *wsClient) waitClosed(d time.Duration) *websocket.CloseError {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(d):
		c.t.Fatalf("connection not closed within %v", d)
	}
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		c.t.Fatalf("connection ended with %v, want a close frame", err)
	}
	return ce
}

// streamAudio sends pcm (mono at rate) as 20 ms mu-law media messages, in real time (message
// i at start + i*20 ms); msg builds each message from its index and base64 payload.
func (c *wsClient) streamAudio(ctx context.Context, pcm []int16, rate int, msg func(i int, payload string) any) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := rate / 50
		var raw []byte
		start := time.Now()
		timer := time.NewTimer(0)
		defer timer.Stop()
		for i := 0; (i+1)*n <= len(pcm); i++ {
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
			raw = mulaw.Encode(raw[:0], pcm[i*n:(i+1)*n])
			b, _ := json.Marshal(msg(i, base64.StdEncoding.EncodeToString(raw)))
			c.wmu.Lock()
			err := c.conn.WriteMessage(websocket.TextMessage, b)
			c.wmu.Unlock()
			if err != nil {
				return
			}
			timer.Reset(time.Until(start.Add(time.Duration(i+1) * frameDuration)))
		}
	}()
	return done
}

// mediaPCM decodes a media message's mu-law payload.
func mediaPCM(t testing.TB, m wsMsg) []int16 {
	t.Helper()
	media, _ := m.m["media"].(map[string]any)
	p, _ := media["payload"].(string)
	raw, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatalf("media payload: %v", err)
	}
	return mulaw.Decode(nil, raw)
}
