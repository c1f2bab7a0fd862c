package fastrtc

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc/client"
)

// The network tests build three namespaces of their own: a server (10.77.1.2), a router
// that NATs (masquerade) the client's private network 192.168.77.0/24 onto the server's
// side, and a client (192.168.77.2) whose only way out is the router. The server and the
// client are this test binary re-run inside their namespace (netnsRole); traffic goes only
// between these namespaces. They need root, ip and nft (scripts/deps.sh installs them), and
// are skipped without them outside CI.

const (
	nsServerIP = "10.77.1.2"
	nsHTTP     = nsServerIP + ":8080"
	nsUDP      = 3479
	nsTCP      = 3480
	nsTURN     = 3478
)

// netnsRole runs the server or client side when the binary is re-run inside a namespace.
func TestNetnsRole(t *testing.T) {
	switch os.Getenv("FASTRTC_NETNS_ROLE") {
	case "server":
		netnsServer(t)
	case "client":
		netnsClient(t)
	default:
		t.Skip("only run by the network tests, inside a namespace")
	}
}

func netnsServer(t *testing.T) {
	s, err := New(VideoFunc(flipHandler), Video, SendReceive,
		WithUDPListenAddr(fmt.Sprintf("%s:%d", nsServerIP, nsUDP)),
		WithICETCP(fmt.Sprintf("%s:%d", nsServerIP, nsTCP)),
		WithTURN(TURNOptions{Addr: fmt.Sprintf("%s:%d", nsServerIP, nsTURN), Secret: "netns", RelayPortMin: 40000, RelayPortMax: 40050}),
		WithSettingEngine(func(se *webrtc.SettingEngine) {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
			se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", nsHTTP)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	fmt.Println("READY")
	// Run until the parent closes stdin (or a minute passes).
	done := make(chan struct{})
	go func() { _, _ = bufio.NewReader(os.Stdin).ReadString('\n'); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
}

func netnsClient(t *testing.T) {
	mode := os.Getenv("FASTRTC_NETNS_CLIENT")
	o := &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: func(se *webrtc.SettingEngine) {
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		se.SetIPFilter(func(ip net.IP) bool { return !ip.IsLoopback() })
	}}
	if mode == "turn" || mode == "turn-expired" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+nsHTTP+"/webrtc/config", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var cfg RTCConfiguration
		err = json.NewDecoder(res.Body).Decode(&cfg)
		res.Body.Close()
		if err != nil || len(cfg.ICEServers) == 0 {
			t.Fatalf("config %+v: %v", cfg, err)
		}
		o.ICEServers = cfg.ICEServers
		if mode == "turn-expired" { // credentials of the right secret, but expired
			for i := range o.ICEServers {
				o.ICEServers[i].Username, o.ICEServers[i].Credential = TURNCredentials("netns", "late", -time.Minute)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, "http://"+nsHTTP, o)
			if err == nil {
				c.Close()
				t.Fatal("connected with expired TURN credentials")
			}
			fmt.Printf("PAIR none: refused (%v)\n", err)
			return
		}
	}
	start := time.Now()
	c, err := client.Dial(context.Background(), "http://"+nsHTTP, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	connected := time.Since(start) // Dial returns once ICE and DTLS are up
	flipRoundTrip(t, c)
	pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected pair: %v", err)
	}
	fmt.Printf("PAIR %s %s %s:%d -> %s %s:%d connected %v after the offer\n", pair.Local.Protocol, pair.Local.Typ, pair.Local.Address, pair.Local.Port,
		pair.Remote.Typ, pair.Remote.Address, pair.Remote.Port, connected.Round(time.Millisecond))
}

// netnsSeq numbers the networks a process builds (newNATNetwork).
var netnsSeq atomic.Int32

// netns is a set of namespaces made by one test, removed by its cleanup.
type netns struct {
	t     testing.TB
	names []string
	stops []func() // stop the processes started in the namespaces
}

// close stops the processes started in the namespaces and deletes them (idempotent).
func (n *netns) close() {
	for _, stop := range n.stops {
		stop()
	}
	n.stops = nil
	for _, name := range n.names {
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

func (n *netns) run(args ...string) {
	n.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNATNetwork builds server, router and client namespaces; allow is the match of an nft
// rule of the router's forward chain (what the router lets through from the client besides
// NAT, e.g. "udp dport 3479"). Each network has names of its own (the process id and a
// sequence number), so that the tests of one process can build theirs at the same time.
func newNATNetwork(t testing.TB, allow string) *netns {
	t.Helper()
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" || os.Getenv("FASTRTC_NETNS") != "" {
				t.Fatalf("%s not found (scripts/deps.sh --test installs it)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, netnsSeq.Add(1))
	n := &netns{t: t, names: []string{"frs" + id, "frr" + id, "frc" + id}}
	srv, rtr, cli := n.names[0], n.names[1], n.names[2]
	t.Cleanup(n.close)
	for _, name := range n.names {
		n.run("ip", "netns", "add", name)
		n.run("ip", "-n", name, "link", "set", "lo", "up")
	}
	n.run("ip", "link", "add", "frs0"+id, "netns", srv, "type", "veth", "peer", "name", "frr0"+id, "netns", rtr)
	n.run("ip", "link", "add", "frc0"+id, "netns", cli, "type", "veth", "peer", "name", "frr1"+id, "netns", rtr)
	n.run("ip", "-n", srv, "addr", "add", nsServerIP+"/24", "dev", "frs0"+id)
	n.run("ip", "-n", rtr, "addr", "add", "10.77.1.1/24", "dev", "frr0"+id)
	n.run("ip", "-n", rtr, "addr", "add", "192.168.77.1/24", "dev", "frr1"+id)
	n.run("ip", "-n", cli, "addr", "add", "192.168.77.2/24", "dev", "frc0"+id)
	for _, l := range [][2]string{{srv, "frs0" + id}, {rtr, "frr0" + id}, {rtr, "frr1" + id}, {cli, "frc0" + id}} {
		n.run("ip", "-n", l[0], "link", "set", l[1], "up")
	}
	n.run("ip", "-n", cli, "route", "add", "default", "via", "192.168.77.1")
	n.run("ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	rules := fmt.Sprintf(`table ip nat {
	chain post {
		type nat hook postrouting priority 100; policy accept;
		oifname "frr0%s" masquerade
	}
}
table ip filter {
	chain filt {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "frr1%s" tcp dport 8080 accept
		iifname "frr1%s" %s accept
	}
}
`, id, id, id, allow)
	cmd := exec.Command("ip", "netns", "exec", rtr, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	return n
}

// start runs this test binary in namespace ns with role, returning its process.
func (n *netns) start(ns, role string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	n.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestNetnsRole$", "-test.v", "-test.timeout", "90s")
	cmd.Env = append(append(os.Environ(), "FASTRTC_NETNS_ROLE="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.stops = append(n.stops, func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // by the PID this test started
			<-done
		}
	})
	return cmd, bufio.NewScanner(out)
}

// startServer runs the server in its namespace and waits until it serves.
func (n *netns) startServer() {
	n.t.Helper()
	_, out := n.start(n.names[0], "server")
	ready := make(chan bool, 1)
	go func() {
		for out.Scan() {
			if strings.Contains(out.Text(), "READY") {
				ready <- true
				for out.Scan() { // keep draining
				}
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			n.t.Fatal("the server exited before READY")
		}
	case <-time.After(30 * time.Second):
		n.t.Fatal("the server did not start")
	}
}

// call runs the server, then the client in mode, and returns the client's PAIR line.
func (n *netns) call(mode string) string {
	n.t.Helper()
	n.startServer()
	cmd, out := n.start(n.names[2], "client", "FASTRTC_NETNS_CLIENT="+mode)
	pair := ""
	var lines []string
	for out.Scan() {
		l := out.Text()
		lines = append(lines, l)
		if strings.HasPrefix(l, "PAIR ") {
			pair = l
		}
	}
	if err := cmd.Wait(); err != nil || pair == "" {
		n.t.Fatalf("client (%s): %v\n%s", mode, err, strings.Join(lines, "\n"))
	}
	n.t.Log(pair)
	return pair
}

// TestNATThroughUDPMux: a client behind a NAT reaches the server's one UDP port.
func TestNATThroughUDPMux(t *testing.T) {
	t.Parallel()
	n := newNATNetwork(t, fmt.Sprintf("udp dport %d", nsUDP))
	pair := n.call("udp")
	if !strings.Contains(pair, "PAIR udp") || !strings.Contains(pair, fmt.Sprintf("%s:%d", nsServerIP, nsUDP)) {
		t.Fatalf("selected %q, want UDP to %s:%d", pair, nsServerIP, nsUDP)
	}
}

// TestNATUDPBlocked: with UDP blocked, the call connects over ICE-TCP.
func TestNATUDPBlocked(t *testing.T) {
	t.Parallel()
	n := newNATNetwork(t, fmt.Sprintf("tcp dport %d", nsTCP))
	pair := n.call("tcp")
	if !strings.Contains(pair, "PAIR tcp") || !strings.Contains(pair, fmt.Sprintf("%s:%d", nsServerIP, nsTCP)) {
		t.Fatalf("selected %q, want TCP to %s:%d", pair, nsServerIP, nsTCP)
	}
}

// TestNATOnlyTURN: no direct path (only the TURN port passes): the call connects through the
// embedded TURN server, and the client's selected candidate is a relay.
func TestNATOnlyTURN(t *testing.T) {
	t.Parallel()
	n := newNATNetwork(t, fmt.Sprintf("udp dport %d", nsTURN))
	pair := n.call("turn")
	if !strings.Contains(pair, " relay ") {
		t.Fatalf("selected %q, want the client's relay candidate", pair)
	}
}

// BenchmarkNATICE reports how long a call takes from the offer to connected (ICE and DTLS
// up) in each simulated network: through the NAT to the UDP port, over ICE-TCP with UDP
// blocked, and through the embedded TURN server only. Each iteration starts a server and a
// client process in fresh namespaces.
//
//	go test -run '^$' -bench NATICE -benchtime 3x .
func BenchmarkNATICE(b *testing.B) {
	for _, tc := range []struct{ mode, rule string }{
		{"udp", fmt.Sprintf("udp dport %d", nsUDP)},
		{"tcp", fmt.Sprintf("tcp dport %d", nsTCP)},
		{"turn", fmt.Sprintf("udp dport %d", nsTURN)},
	} {
		b.Run(tc.mode, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				n := newNATNetwork(b, tc.rule)
				pair := n.call(tc.mode)
				_, after, _ := strings.Cut(pair, " connected ")
				d, err := time.ParseDuration(strings.Fields(after)[0])
				if err != nil {
					b.Fatalf("%q: %v", pair, err)
				}
				total += d
				n.close()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/connect")
		})
	}
}

// TestNATOnlyTURNChromium: headless Chromium in the client namespace, with only the TURN
// port open, connects through the built-in page (which takes its ICE servers from
// /webrtc/config) via a relay, and the server's video plays.
func TestNATOnlyTURNChromium(t *testing.T) {
	t.Parallel()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	_, errNode := exec.LookPath("node")
	_, errChrome := os.Stat(chromium)
	_, errMods := os.Stat("e2e/node_modules/playwright-core")
	if errNode != nil || errChrome != nil || errMods != nil {
		if os.Getenv("CI") != "" || os.Getenv("FASTRTC_NETNS") != "" {
			t.Fatalf("need node, %s and e2e/node_modules (scripts/test.sh installs them): %v %v %v", chromium, errNode, errChrome, errMods)
		}
		t.Skip("node, Chromium or e2e/node_modules missing")
	}
	n := newNATNetwork(t, fmt.Sprintf("udp dport %d", nsTURN))
	n.startServer()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.names[2], "node", "e2e/turn.mjs", "http://"+nsHTTP+"/")
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("Chromium through TURN: %v", err)
	}
}

// TestNATTURNExpired: the same network with expired TURN credentials does not connect.
func TestNATTURNExpired(t *testing.T) {
	t.Parallel()
	n := newNATNetwork(t, fmt.Sprintf("udp dport %d", nsTURN))
	if pair := n.call("turn-expired"); !strings.Contains(pair, "refused") {
		t.Fatalf("client said %q", pair)
	}
}
