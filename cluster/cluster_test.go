package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/cluster"
	"github.com/fastrtc-go/fastrtc/internal/loadgen"
	"github.com/fastrtc-go/fastrtc/media"
	"github.com/fastrtc-go/fastrtc/metrics"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }))
}

// startNATS runs an embedded nats-server with JetStream on a loopback port.
func startNATS(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("CLUSTER_TEST_NATS"); u != "" { // an external server, e.g. Debian's
		return u
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// tnode is one node of a test cluster: its NATS connection, cluster node, stream, server.
type tnode struct {
	id     string
	nc     *nats.Conn
	node   *cluster.Node
	stream *fastrtc.Stream
	srv    *httptest.Server
	killed bool
}

// kill stops a node as a crash would: its NATS connection drops first (nothing is
// released over NATS), then its sessions and server go.
func (n *tnode) kill() {
	n.killed = true
	n.nc.Close()
	_ = n.stream.Close()
	n.srv.CloseClientConnections()
	n.srv.Close()
	_ = n.node.Close()
}

func logger(t testing.TB) *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// newCluster starts n nodes serving h.
func newCluster(t testing.TB, natsURL string, n int, co cluster.Options, h fastrtc.Handler, opts ...fastrtc.Option) []*tnode {
	t.Helper()
	var nodes []*tnode
	for i := range n {
		tn := &tnode{id: string(rune('A' + i))}
		var err error
		tn.nc, err = nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		o := co
		o.NodeID, o.Logger = tn.id, logger(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tn.node, err = cluster.Join(ctx, tn.nc, o)
		cancel()
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		tn.stream, err = fastrtc.New(h, fastrtc.Audio, fastrtc.SendReceive,
			append([]fastrtc.Option{fastrtc.WithSettingEngine(loadgen.Loopback), fastrtc.WithCluster(tn.node), fastrtc.WithLogger(logger(t))}, opts...)...)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		mux := http.NewServeMux()
		tn.stream.Mount(mux)
		tn.srv = httptest.NewServer(mux)
		nodes = append(nodes, tn)
		t.Cleanup(func() {
			if tn.killed {
				return
			}
			_ = tn.stream.Close()
			tn.srv.Close()
			_ = tn.node.Close()
			tn.nc.Close()
		})
	}
	return nodes
}

// proxy is a round-robin load balancer over the nodes: each kind of request (offer,
// candidate, input hook, outputs, other) has its own turn, starting at the node given in
// start, so that a test knows where each request lands. It records every request's node.
type proxy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	turn  map[string]int
	start map[string]int
	nodes []*tnode
	log   []string // "kind:node"
}

func newProxy(t testing.TB, nodes []*tnode, start map[string]int) *proxy {
	p := &proxy{turn: map[string]int{}, start: start, nodes: nodes}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	kind := strings.TrimPrefix(r.URL.Path, "/")
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	if kind == "webrtc/offer" {
		kind = "offer"
		if strings.Contains(string(body), `"ice-candidate"`) {
			kind = "candidate"
		}
	}
	p.mu.Lock()
	var live []*tnode
	for _, n := range p.nodes {
		if !n.killed {
			live = append(live, n)
		}
	}
	k := p.start[kind] + p.turn[kind]
	p.turn[kind]++
	tn := live[k%len(live)]
	p.log = append(p.log, kind+":"+tn.id)
	p.mu.Unlock()
	u, _ := url.Parse(tn.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ServeHTTP(w, r)
}

func (p *proxy) landed(kind string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.log {
		if k, n, _ := strings.Cut(l, ":"); k == kind {
			out = append(out, n)
		}
	}
	return out
}

// tickHandler echoes audio and emits {"i": call, "n": input n} on every call; seen records
// the first call that saw each value of n.
type tickHandler struct {
	calls atomic.Int64
	mu    sync.Mutex
	seen  map[float64]int64
}

func (th *tickHandler) handler() fastrtc.Handler {
	return fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		i := th.calls.Add(1)
		n := s.Inputs().Float("n")
		th.mu.Lock()
		if _, ok := th.seen[n]; !ok {
			th.seen[n] = i
		}
		th.mu.Unlock()
		_ = s.Emit(map[string]any{"i": i, "n": n})
		return in, nil
	})
}

func (th *tickHandler) firstSeen(n float64) (int64, bool) {
	th.mu.Lock()
	defer th.mu.Unlock()
	i, ok := th.seen[n]
	return i, ok
}

// tone is 20 ms of a 440 Hz sine at 48 kHz, starting at sample k.
func tone(k int) media.AudioFrame {
	pcm := make([]int16, 960)
	for j := range pcm {
		pcm[j] = int16(8000 * math.Sin(2*math.Pi*440*float64(k+j)/48000))
	}
	return media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm}
}

// talk sends a tone until ctx is done.
func talk(ctx context.Context, c *client.Conn) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for k := 0; ctx.Err() == nil; k += 960 {
		if c.SendAudio(ctx, tone(k)) != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// hearsTone reads audio back until one frame carries the tone (RMS well above silence).
func hearsTone(t testing.TB, ctx context.Context, c *client.Conn) {
	t.Helper()
	for i := 0; i < 200; i++ {
		f, err := c.ReadAudio(ctx)
		if err != nil {
			t.Fatalf("ReadAudio: %v", err)
		}
		var sum float64
		for _, v := range f.Samples {
			sum += float64(v) * float64(v)
		}
		if len(f.Samples) > 0 && math.Sqrt(sum/float64(len(f.Samples))) > 2000 {
			return
		}
	}
	t.Fatal("no echoed tone in 200 frames")
}

func dial(t testing.TB, ctx context.Context, base, id string) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctx, base, &client.Options{ID: id, SendAudio: true, ReceiveAudio: true, Trickle: true, SettingEngine: loadgen.Loopback})
	if err != nil {
		t.Fatalf("Dial %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sse reads Server-Sent Events' data lines from GET /outputs.
func sse(t testing.TB, ctx context.Context, url string) (<-chan json.RawMessage, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	ch := make(chan json.RawMessage, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				ch <- json.RawMessage(d)
			}
		}
	}()
	return ch, resp
}

func postInput(t testing.TB, base, id string, n float64) int {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"webrtc_id": id, "n": n})
	resp, err := http.Post(base+"/input_hook", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("input_hook: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

type tick struct {
	I int64   `json:"i"`
	N float64 `json:"n"`
}

// TestForwarding: the offer lands on node A, the trickled candidates on B (then C, A...),
// /input_hook on C (then A, B...), /outputs on B. The media stays on A; the handler sees each
// posted input on its next call; the outputs arrive in order, none lost.
func TestForwarding(t *testing.T) {
	url := startNATS(t)
	th := &tickHandler{seen: map[float64]int64{}}
	nodes := newCluster(t, url, 3, cluster.Options{Name: "fwd"}, th.handler(),
		fastrtc.WithInputs(fastrtc.Number("n", 0)))
	p := newProxy(t, nodes, map[string]int{"offer": 0, "candidate": 1, "input_hook": 2, "outputs": 1, "stats": 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The page opens its EventSource first (FastRTC's webrtc_vs_websocket does): node B
	// waits for the session to appear anywhere in the cluster.
	type opened struct {
		ch   <-chan json.RawMessage
		resp *http.Response
	}
	outs := make(chan opened, 1)
	go func() {
		ch, resp := sse(t, ctx, p.srv.URL+"/outputs?webrtc_id=s1") //nolint:bodyclose // closed by the test once it read enough
		outs <- opened{ch, resp}
	}()
	time.Sleep(100 * time.Millisecond)
	c := dial(t, ctx, p.srv.URL, "s1")
	tctx, stopTalk := context.WithCancel(ctx)
	defer stopTalk()
	go talk(tctx, c)
	hearsTone(t, ctx, c)
	o := <-outs
	if got := o.resp.Header.Get(fastrtc.NodeHeader); got != "A" {
		t.Errorf("/outputs served by node %q, want A (through B)", got)
	}

	var want float64
	next := int64(0)
	read := func(untilN float64) {
		t.Helper()
		for {
			select {
			case v, ok := <-o.ch:
				if !ok {
					t.Fatal("outputs ended")
				}
				var tk tick
				if err := json.Unmarshal(v, &tk); err != nil {
					t.Fatalf("output %s: %v", v, err)
				}
				if next != 0 && tk.I != next {
					t.Fatalf("output of call %d after call %d: out of order or lost", tk.I, next-1)
				}
				next = tk.I + 1
				if tk.N == untilN {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no output with n=%v", untilN)
			}
		}
	}
	for k := 1; k <= 6; k++ {
		want = float64(k)
		if code := postInput(t, p.srv.URL, "s1", want); code != http.StatusOK {
			t.Fatalf("input_hook %d: status %d", k, code)
		}
		after := th.calls.Load()
		read(want)
		seen, _ := th.firstSeen(want)
		if seen > after+1 {
			t.Errorf("input n=%v posted after call %d was first seen by call %d (want the next one)", want, after, seen)
		}
	}
	// Go calls on a node that does not hold the session.
	if err := nodes[2].stream.SetInput("s1", map[string]any{"n": 7}); err != nil {
		t.Fatalf("SetInput on C: %v", err)
	}
	read(7)
	if err := nodes[1].stream.SetInput("s1", map[string]any{"n": "seven"}); err == nil {
		t.Error("SetInput of a string into a number: no error")
	}
	info, err := nodes[1].stream.Lookup(ctx, "s1")
	if err != nil || info.Node != "A" || info.ID != "s1" || info.AudioIn == 0 {
		t.Errorf("Lookup on B: %+v, %v; want node A with audio in", info, err)
	}
	if _, err := nodes[1].stream.Lookup(ctx, "nobody"); err == nil {
		t.Error("Lookup of an unknown id: no error")
	}
	// Readers of one session share its outputs: the page's stream goes first, and its end
	// reaches A (B tells it), which then stops reading for it.
	o.resp.Body.Close()
	time.Sleep(300 * time.Millisecond)
	gctx, gcancel := context.WithCancel(ctx)
	gch, err := nodes[2].stream.Outputs(gctx, "s1")
	if err != nil {
		t.Fatalf("Outputs on C: %v", err)
	}
	// A large value (an image as base64, say) comes through whole.
	sessA, err := nodes[0].stream.Session("s1")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 200<<10)
	if err := sessA.Emit(big); err != nil {
		t.Fatal(err)
	}
	gotBig := false
	for i := 0; i < 500 && !gotBig; i++ {
		var v string
		gotBig = json.Unmarshal(<-gch, &v) == nil && v == big
	}
	if !gotBig {
		t.Error("a 200 KB output did not arrive whole through Go Outputs on C")
	}
	var last int64
	for i := 0; i < 10; i++ {
		var tk tick
		if err := json.Unmarshal(<-gch, &tk); err != nil {
			t.Fatal(err)
		}
		if last != 0 && tk.I != last+1 {
			t.Fatalf("Go Outputs on C: call %d after %d", tk.I, last)
		}
		last = tk.I
	}
	gcancel()
	// Unknown ids are unknown everywhere, at once for input hooks.
	if code := postInput(t, p.srv.URL, "nobody", 1); code != http.StatusNotFound {
		t.Errorf("input_hook for an unknown id: %d, want 404", code)
	}
	if sessions := nodes[0].stream.Sessions(); len(sessions) != 1 || len(nodes[1].stream.Sessions())+len(nodes[2].stream.Sessions()) != 0 {
		t.Errorf("sessions: A %v, B %v, C %v; want s1 on A only", sessions, nodes[1].stream.Sessions(), nodes[2].stream.Sessions())
	}
	if all, err := nodes[2].node.Sessions(ctx); err != nil || len(all) != 1 || all["s1"] != "A" {
		t.Errorf("Sessions on C: %v, %v; want s1 on A", all, err)
	}
	ni, err := nodes[0].node.Nodes(ctx, 300*time.Millisecond)
	if err != nil || len(ni) != 3 {
		t.Errorf("Nodes: %v %v, want 3", ni, err)
	}
	// Per-node metrics: A holds the session, B served the forwarded requests.
	for i, want := range []string{`fastrtc_sessions{modality="audio",node="A",stream="fwd",transport="webrtc"} 1`,
		`fastrtc_sessions{modality="audio",node="B",stream="fwd",transport="webrtc"} 0`} {
		rec := httptest.NewRecorder()
		metrics.Handler("fwd", nodes[i].stream).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("node %s's /metrics lacks %s", nodes[i].id, want)
		}
	}
	if got := p.landed("offer"); len(got) != 1 || got[0] != "A" {
		t.Errorf("offers landed on %v, want [A]", got)
	}
	if got := p.landed("candidate"); len(got) == 0 || got[0] != "B" {
		t.Errorf("candidates landed on %v, want B first", got)
	}
	if got := p.landed("input_hook"); len(got) < 3 || got[0] != "C" || got[1] != "A" || got[2] != "B" {
		t.Errorf("input hooks landed on %v, want C, A, B...", got)
	}
	stopTalk()
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(nodes[0].stream.Sessions()) == 0 }, "the session to end on A")
}

func waitFor(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// offerSDP is an audio+data-channel offer from a pion peer that never connects.
func offerSDP(t testing.TB) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.CreateDataChannel("text", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// offerResult posts one offer and classifies the reply: "answer", or the failure's
// reason ("cluster", "node", "draining"), or "error: ...".
func offerResult(base, sdp, id string) string {
	b, _ := json.Marshal(map[string]string{"sdp": sdp, "type": "offer", "webrtc_id": id})
	resp, err := http.Post(base+"/webrtc/offer", "application/json", strings.NewReader(string(b)))
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	var r struct {
		Type   string `json:"type"`
		Status string `json:"status"`
		Meta   struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
		} `json:"meta"`
	}
	body, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(body, &r) != nil {
		return fmt.Sprintf("error: %d %s", resp.StatusCode, body)
	}
	switch {
	case r.Type == "answer":
		return "answer"
	case r.Status == "failed" && r.Meta.Error == "concurrency_limit_reached":
		return r.Meta.Reason
	}
	return fmt.Sprintf("error: %d %s", resp.StatusCode, body)
}

// TestBurst: 3 nodes, a cluster limit of N, 3N offers at once spread over the nodes:
// exactly N answers, the rest FastRTC's concurrency_limit_reached failure.
func TestBurst(t *testing.T) {
	url := startNATS(t)
	const N = 6
	nodes := newCluster(t, url, 3, cluster.Options{Name: "burst", Limit: N}, fastrtc.AudioFunc(echo),
		fastrtc.WithConnectTimeout(30*time.Second))
	sdp := offerSDP(t)
	results := make([]string, 3*N)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = offerResult(nodes[i%3].srv.URL, sdp, fmt.Sprintf("burst-%d", i))
		}()
	}
	close(start)
	wg.Wait()
	count := map[string]int{}
	for _, r := range results {
		count[r]++
	}
	if count["answer"] != N || count["cluster"] != 2*N {
		t.Fatalf("%d offers to 3 nodes under a cluster limit of %d: %v; want %d answers, %d refusals", 3*N, N, count, N, 2*N)
	}
	held := 0
	for _, n := range nodes {
		held += n.stream.Stats().Sessions
	}
	if held != N {
		t.Errorf("%d sessions held across the nodes, want %d", held, N)
	}
	// A second offer with an id another node holds is refused as FastRTC refuses it.
	for i, r := range results {
		if r == "answer" {
			other := nodes[(i+1)%3].srv.URL
			if got := offerResult(other, sdp, fmt.Sprintf("burst-%d", i)); !strings.Contains(got, "connection_already_exists") {
				t.Errorf("the same id on another node: %q, want connection_already_exists", got)
			}
			break
		}
	}
}

func echo(_ *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil }

// TestNodeKilled: node A dies mid-session. Requests for its session stop reaching it (404
// from the others), the session on B goes on undisturbed, and A's slot comes back within
// the TTL.
func TestNodeKilled(t *testing.T) {
	url := startNATS(t)
	const ttl = 1500 * time.Millisecond
	th := &tickHandler{seen: map[float64]int64{}}
	nodes := newCluster(t, url, 3, cluster.Options{Name: "kill", Limit: 2, TTL: ttl}, th.handler(),
		fastrtc.WithInputs(fastrtc.Number("n", 0)), fastrtc.WithConnectTimeout(30*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := dial(t, ctx, nodes[0].srv.URL, "x")
	y := dial(t, ctx, nodes[1].srv.URL, "y")
	tctx, stopTalk := context.WithCancel(ctx)
	defer stopTalk()
	go talk(tctx, x)
	go talk(tctx, y)
	hearsTone(t, ctx, y)
	sdp := offerSDP(t)
	if got := offerResult(nodes[2].srv.URL, sdp, "z0"); got != "cluster" {
		t.Fatalf("a third session under a limit of 2: %q, want refused", got)
	}

	nodes[0].kill()
	killed := time.Now()
	if code := postInput(t, nodes[2].srv.URL, "x", 1); code != http.StatusNotFound {
		t.Errorf("input for the dead node's session: %d, want 404", code)
	}
	// y is unaffected: inputs through C reach it, its audio flows.
	if code := postInput(t, nodes[2].srv.URL, "y", 5); code != http.StatusOK {
		t.Errorf("input for y through C: %d", code)
	}
	waitFor(t, 5*time.Second, func() bool { _, ok := th.firstSeen(5); return ok }, "y's handler to see n=5")
	hearsTone(t, ctx, y)
	// x's slot comes back: within the TTL plus the heartbeat (an expiry is checked about
	// every second by the server), never before the TTL is nearly over.
	var got string
	for i := 0; ; i++ {
		got = offerResult(nodes[2].srv.URL, sdp, fmt.Sprintf("z%d", i+1))
		if got == "answer" || time.Since(killed) > 3*ttl {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "answer" {
		t.Fatalf("the dead node's slot did not come back within %v: %q", 3*ttl, got)
	}
	if since := time.Since(killed); since < ttl*8/10 {
		t.Errorf("the dead node's slot came back after %v, before its TTL %v: freed, not expired?", since, ttl)
	}
	t.Logf("the dead node's slot came back %v after it died (TTL %v)", time.Since(killed).Round(10*time.Millisecond), ttl)
	hearsTone(t, ctx, y)
}

// TestDrain: a draining node hands the offers it gets to another node (which answers them:
// the media goes there), refuses them with FastRTC's failure (reason "draining") when no
// node takes them, and its session ends with end_stream at the deadline.
func TestDrain(t *testing.T) {
	url := startNATS(t)
	nodes := newCluster(t, url, 2, cluster.Options{Name: "drain"}, fastrtc.AudioFunc(echo))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := dial(t, ctx, nodes[0].srv.URL, "x")
	dctx, dcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer dcancel()
	drained := make(chan error, 1)
	go func() { drained <- nodes[0].node.Drain(dctx) }()
	waitFor(t, 5*time.Second, nodes[0].stream.Draining, "draining")
	sdp := offerSDP(t)
	if got := offerResult(nodes[0].srv.URL, sdp, "new-a"); got != "answer" {
		t.Errorf("offer to the draining node: %q, want an answer from the other node", got)
	}
	if _, err := nodes[1].stream.Session("new-a"); err != nil {
		t.Errorf("the handed-over offer's session is not on node B: %v", err)
	}
	if got := offerResult(nodes[1].srv.URL, sdp, "new-b"); got != "answer" {
		t.Errorf("offer to the other node: %q, want answer", got)
	}
	for {
		m, err := x.Message(ctx)
		if err != nil {
			t.Fatalf("no end_stream: %v", err)
		}
		if m.Type == "end_stream" {
			break
		}
	}
	if err := <-drained; err == nil {
		t.Error("Drain past its deadline returned nil")
	}
	if n := nodes[0].stream.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions left after Drain", n)
	}
}

// TestHandOver: a full node (its own limit of 1) hands an offer to a node with room; when
// every node is full, the refusal is FastRTC's, with reason "node".
func TestHandOver(t *testing.T) {
	url := startNATS(t)
	nodes := newCluster(t, url, 2, cluster.Options{Name: "handover"}, fastrtc.AudioFunc(echo),
		fastrtc.WithConcurrencyLimit(1), fastrtc.WithConnectTimeout(30*time.Second))
	sdp := offerSDP(t)
	for i, want := range []string{"answer", "answer", "node"} {
		if got := offerResult(nodes[0].srv.URL, sdp, fmt.Sprintf("h%d", i)); got != want {
			t.Fatalf("offer %d to node A (limit 1 on each of 2 nodes): %q, want %q", i, got, want)
		}
	}
	if a, b := nodes[0].stream.Sessions(), nodes[1].stream.Sessions(); len(a) != 1 || len(b) != 1 || b[0] != "h1" {
		t.Errorf("sessions: A %v, B %v; want h0 on A, h1 on B", a, b)
	}
}

// TestLongIDKeepsNodeConnected: ids longer than fastrtc.MaxIDLength (a ~3,100-byte one made
// a subject over NATS's control-line limit, and nats.go closed the node's connection for
// good) are refused with 400 on every route and by every Go entry point, the node stays
// connected and forwards; a node whose connection is closed reports it and takes no session.
func TestLongIDKeepsNodeConnected(t *testing.T) {
	url := startNATS(t)
	nodes := newCluster(t, url, 2, cluster.Options{Name: "longid"}, fastrtc.AudioFunc(echo),
		fastrtc.WithInputs(fastrtc.Number("n", 0)))
	long := strings.Repeat("a", 3100)
	base := nodes[0].srv.URL
	if code := postInput(t, base, long, 1); code != http.StatusBadRequest {
		t.Fatalf("/input_hook with a 3100-byte id: %d, want 400", code)
	}
	for _, route := range []string{"/stats", "/outputs"} {
		resp, err := http.Get(base + route + "?webrtc_id=" + long)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s with a 3100-byte id: %d, want 400", route, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := nodes[0].stream.SetInputContext(ctx, long, map[string]any{"n": 1.0}); !errors.Is(err, fastrtc.ErrInvalidID) {
		t.Fatalf("SetInput: %v, want ErrInvalidID", err)
	}
	if _, err := nodes[0].stream.Outputs(ctx, long); !errors.Is(err, fastrtc.ErrInvalidID) {
		t.Fatalf("Outputs: %v, want ErrInvalidID", err)
	}
	if _, err := nodes[0].node.Admit(ctx, long); !errors.Is(err, fastrtc.ErrInvalidID) {
		t.Fatalf("Admit: %v, want ErrInvalidID", err)
	}
	if !nodes[0].nc.IsConnected() || nodes[0].node.Healthy() != nil {
		t.Fatal("node A lost its NATS connection")
	}
	// Forwarding still works: a session on B gets an input posted to A.
	c := dial(t, ctx, nodes[1].srv.URL, "longid-b")
	defer c.Close()
	if code := postInput(t, base, "longid-b", 2); code != http.StatusOK {
		t.Fatalf("forwarded input after the long ids: %d, want 200", code)
	}
	// A node whose connection closed says so, and takes no session.
	nodes[0].nc.Close()
	if err := nodes[0].node.Healthy(); !errors.Is(err, cluster.ErrNATSClosed) {
		t.Fatalf("Healthy after the connection closed: %v", err)
	}
	if _, err := nodes[0].node.Admit(ctx, "after-close"); !errors.Is(err, fastrtc.ErrDraining) {
		t.Fatalf("Admit after the connection closed: %v, want a draining refusal", err)
	}
}
