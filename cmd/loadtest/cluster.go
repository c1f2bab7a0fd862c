package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/loadgen"
	"github.com/fastrtc-go/fastrtc/media"
)

// rrProxy is a round-robin reverse proxy over the nodes: every request goes to the next
// node, whatever it is (offers, trickled candidates, /stats). It tags each response with
// the node index it used (X-Loadtest-Backend).
type rrProxy struct {
	next  atomic.Uint64
	nodes []*httputil.ReverseProxy
}

func (p *rrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(p.next.Add(1)-1) % len(p.nodes)
	w.Header().Set("X-Loadtest-Backend", strconv.Itoa(i))
	p.nodes[i].ServeHTTP(w, r)
}

// clusterSession is one echo session of the cluster run.
type clusterSession struct {
	c       *client.Conn
	node    string // the node that holds it (from /stats)
	packets atomic.Int64
	wg      sync.WaitGroup
}

// runCluster drives n audio echo sessions (examples/echo nodes) through a round-robin
// proxy over the nodes: offers and trickled candidates land on any node. It reports, per
// node, the sessions it holds, the echoed packet rate, its CPU (process_cpu_seconds_total of
// its /metrics) and the latency of GET /stats answered locally or forwarded over NATS.
func runCluster(nodeURLs, metricsURLs []string, n int, duration time.Duration) error {
	var p rrProxy
	for _, u := range nodeURLs {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			return errors.New("-nodes must be on loopback")
		}
		pu, err := url.Parse(u)
		if err != nil {
			return err
		}
		rp := httputil.NewSingleHostReverseProxy(pu)
		rp.FlushInterval = -1
		p.nodes = append(p.nodes, rp)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: &p, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), duration+90*time.Second)
	defer cancel()
	var sessions []*clusterSession
	refused := 0
	var dialErrs []string
	for i := 0; i < n; i++ {
		dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
		c, err := client.Dial(dctx, base, &client.Options{ID: fmt.Sprintf("cl%d-%d", os.Getpid(), i),
			SendAudio: true, ReceiveAudio: true, Trickle: true, SettingEngine: loadgen.Loopback})
		dcancel()
		var re *client.RefusedError
		switch {
		case errors.As(err, &re):
			refused++
			dialErrs = append(dialErrs, "refused: "+err.Error())
			continue
		case err != nil:
			dialErrs = append(dialErrs, err.Error())
			continue
		}
		s := &clusterSession{c: c}
		sessions = append(sessions, s)
		defer func() { _ = c.Close(); s.wg.Wait() }()
		s.wg.Add(2)
		go func() { // echo: count the packets that come back
			defer s.wg.Done()
			for {
				if _, err := c.ReadAudioRTP(context.Background()); err != nil {
					return
				}
				s.packets.Add(1)
			}
		}()
		go func() { // a tone, paced
			defer s.wg.Done()
			pcm := make([]int16, 960)
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for k := 0; ; k++ {
				for j := range pcm {
					pcm[j] = int16(6000 * math.Sin(2*math.Pi*440*float64(k*960+j)/48000))
				}
				if c.SendAudio(ctx, media.AudioFrame{SampleRate: 48000, Channels: 1, Samples: pcm}) != nil {
					return
				}
				select {
				case <-t.C:
				case <-c.Done():
					return
				case <-ctx.Done():
					return
				}
			}
		}()
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // warm up
	cpu0 := make([]float64, len(nodeURLs))
	for i := range nodeURLs {
		cpu0[i] = scrapeCPU(metricsURLs[i])
	}
	for _, s := range sessions {
		s.packets.Store(0)
	}
	// /stats of every session through the proxy, over and over: about 2 in 3 are
	// forwarded to the session's node.
	local, forwarded := map[string][]time.Duration{}, map[string][]time.Duration{}
	start := time.Now()
	for time.Since(start) < duration {
		for _, s := range sessions {
			t0 := time.Now()
			node, backend, err := lookup(ctx, base, s.c.ID())
			d := time.Since(t0)
			if err != nil {
				return fmt.Errorf("/stats of %s: %w", s.c.ID(), err)
			}
			s.node = node
			if nodeName(metricsURLs, backend) == node {
				local[node] = append(local[node], d)
			} else {
				forwarded[node] = append(forwarded[node], d)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// One request more per pass, so that a session count divisible by the node count
		// does not land each session's lookups on the same node every time.
		if res, err := get(ctx, base+"/webrtc/config"); err == nil {
			res.Body.Close()
		}
	}
	wall := time.Since(start)
	type nodeFig struct {
		Sessions      int     `json:"sessions"`
		EchoPPS       float64 `json:"echo_packets_per_s_per_session"`
		CPU           float64 `json:"cpu_percent_of_one_core"`
		LocalP50      float64 `json:"stats_local_ms_p50"`
		LocalP95      float64 `json:"stats_local_ms_p95"`
		ForwardedP50  float64 `json:"stats_forwarded_ms_p50"`
		ForwardedP95  float64 `json:"stats_forwarded_ms_p95"`
		LookupsLocal  int     `json:"stats_local"`
		LookupsFwd    int     `json:"stats_forwarded"`
		MetricSession float64 `json:"metrics_sessions"`
	}
	perNode := map[string]*nodeFig{}
	for i := range nodeURLs {
		name := nodeName(metricsURLs, i)
		f := &nodeFig{CPU: 100 * (scrapeCPU(metricsURLs[i]) - cpu0[i]) / wall.Seconds(), MetricSession: scrapeSessions(metricsURLs[i])}
		ms := func(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }
		l, fw := local[name], forwarded[name]
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		sort.Slice(fw, func(a, b int) bool { return fw[a] < fw[b] })
		f.LocalP50, f.LocalP95, f.LookupsLocal = ms(percentile(l, .5)), ms(percentile(l, .95)), len(l)
		f.ForwardedP50, f.ForwardedP95, f.LookupsFwd = ms(percentile(fw, .5)), ms(percentile(fw, .95)), len(fw)
		perNode[name] = f
	}
	for _, s := range sessions {
		if f := perNode[s.node]; f != nil {
			f.Sessions++
			f.EchoPPS += float64(s.packets.Load()) / wall.Seconds()
		}
	}
	for _, f := range perNode {
		if f.Sessions > 0 {
			f.EchoPPS = math.Round(f.EchoPPS/float64(f.Sessions)*10) / 10
		}
		f.CPU = math.Round(f.CPU*10) / 10
	}
	res := map[string]any{"kind": "cluster", "sessions_requested": n, "connected": len(sessions), "refused": refused,
		"failed": len(dialErrs) - refused, "seconds": wall.Seconds(), "nodes": perNode}
	if len(dialErrs) > 0 {
		res["errors"] = dialErrs
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// nodeNames are the nodes' names, from the node label of their /metrics.
var nodeNames sync.Map // base URL -> name

// nodeName is the name of node i (its /metrics' node label).
func nodeName(urls []string, i int) string {
	if v, ok := nodeNames.Load(urls[i]); ok {
		return v.(string)
	}
	name := fmt.Sprintf("node%d", i+1)
	if res, err := get(context.Background(), urls[i]+"/metrics"); err == nil {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "fastrtc_sessions{") {
				continue
			}
			if _, rest, ok := strings.Cut(line, `node="`); ok {
				name, _, _ = strings.Cut(rest, `"`)
				break
			}
		}
		res.Body.Close()
	}
	nodeNames.Store(urls[i], name)
	return name
}

// lookup gets GET /stats of id through the proxy: the node holding it, and the backend the
// proxy used.
func lookup(ctx context.Context, base, id string) (node string, backend int, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/stats?webrtc_id="+url.QueryEscape(id), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	var info struct {
		Node string `json:"node"`
	}
	if res.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("status %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return "", 0, err
	}
	backend, _ = strconv.Atoi(res.Header.Get("X-Loadtest-Backend"))
	return info.Node, backend, nil
}

// scrapeMetric returns the sum of the samples of a metric in a node's /metrics.
func scrapeMetric(base, prefix string) float64 {
	res, err := get(context.Background(), base+"/metrics")
	if err != nil {
		return math.NaN()
	}
	defer res.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func scrapeCPU(base string) float64 { return scrapeMetric(base, "process_cpu_seconds_total ") }

func scrapeSessions(base string) float64 { return scrapeMetric(base, "fastrtc_sessions{") }

// get is a GET bounded to 10 s.
func get(ctx context.Context, url string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	res.Body = cancelBody{res.Body, cancel}
	return res, nil
}

// cancelBody cancels its request's context when closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }
