// Package cluster runs a fastrtc Stream as one node of many, over NATS: sessions live on the
// node that answered their offer (their media flows there), and every other request that
// names a session (trickled ICE candidates, /input_hook, /outputs, /stats, and the Go calls
// SetInput, Outputs and Lookup) may reach any node: it is forwarded over NATS
// request/reply to the node that holds the session and answered from there. No sticky
// routing is needed for anything but the media.
//
// A cluster-wide concurrency limit is kept in a JetStream key-value bucket: a session takes
// one of Limit slot keys with an atomic create, so a burst of offers to different nodes
// admits exactly Limit sessions. Every node refreshes the keys it holds; the bucket's TTL
// expires those of a node that died, so its slots come back within Options.TTL.
//
//	nc, _ := nats.Connect(url)
//	node, _ := cluster.Join(ctx, nc, cluster.Options{Name: "echo", Limit: 200})
//	s, _ := fastrtc.New(handler, fastrtc.Audio, fastrtc.SendReceive, fastrtc.WithCluster(node))
//
// What travels over NATS (Name is the stream's cluster name, <id> the base64url of the
// session id):
//
//	fastrtc.<Name>.s.<id>  request: a fastrtc.Forwarded (JSON); replies: the response,
//	                       streamed in order to the requester's inbox
//	fastrtc.<Name>.offer   queue group "offers": an offer a full or draining node hands
//	                       over; one node that takes sessions answers it
//	fastrtc.<Name>.nodes   request: a listing; every node replies with its NodeInfo
//	KV fastrtc_<Name>      s.<id> -> node (ids are unique cluster-wide),
//	                       slot.<k> -> session (the limit's slots), refreshed every TTL/3
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options configure a node.
type Options struct {
	// Name is the stream's name in the cluster: nodes with the same Name serve the same
	// stream. Letters, digits, - and _; default "fastrtc".
	Name string
	// NodeID names this node (metrics labels, the X-Fastrtc-Node header); default
	// <hostname>-<pid>-<random>. Unique in the cluster.
	NodeID string
	// Limit is the most sessions the whole cluster holds at once; 0 means no cluster-wide
	// limit (each node's fastrtc.WithConcurrencyLimit still applies). Give every node the
	// same value.
	Limit int
	// TTL bounds how long the slots and session ids of a node that died stay taken
	// (default 10 s). Live nodes refresh theirs every TTL/3.
	TTL time.Duration
	// RequestTimeout bounds the wait for the first reply of a forwarded request and the
	// idle time of a streamed one (default 5 s; streams send keepalives).
	RequestTimeout time.Duration
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
}

// Node is one node of a cluster: a fastrtc.Cluster (pass it to fastrtc.WithCluster) over a
// NATS connection. All methods are safe for concurrent use.
type Node struct {
	nc     *nats.Conn
	ownNC  bool // Connect made nc: Close closes it
	js     jetstream.JetStream
	kvCfg  jetstream.KeyValueConfig
	kv     jetstream.KeyValue
	opts   Options
	log    *slog.Logger
	prefix string // "fastrtc.<Name>"

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // heartbeat, slot watcher, forwarded requests

	mu         sync.Mutex
	stream     *fastrtc.Stream
	held       map[string]*held // session id -> what it holds
	slots      map[int]slotState
	closed     bool
	nodesSub   *nats.Subscription
	offerSub   *nats.Subscription // handed-over offers, while the stream takes sessions
	draining   bool
	rewatch    chan struct{} // the bucket was created again: the slot watch starts over
	bucketMade time.Time     // when the bucket this node last saw was created
}

// held is what one session of this node holds in the cluster.
type held struct {
	mu      sync.Mutex // serializes the heartbeat's refresh and release: revisions stay true
	gone    bool       // released: the heartbeat leaves it alone
	sub     *nats.Subscription
	sessRev uint64
	slot    int // -1: none
	slotRev uint64
	idVal   []byte // the s.<id> key's value: "node instance" (instance: random, per session)
	slotVal []byte // the slot key's value: "id-token node instance"
}

// slotState is this node's view of one slot key.
type slotState struct {
	taken bool
	at    time.Time // when it was last written (taken slots expire TTL after it)
}

// NodeInfo is one node's answer to Nodes.
type NodeInfo struct {
	Node     string `json:"node"`
	Sessions int    `json:"sessions"`
	Draining bool   `json:"draining"`
}

// ErrClosed is returned by a Node's methods after Close. It wraps fastrtc.ErrDraining, so an
// offer that reaches a closed node gets FastRTC's draining refusal (or goes to another node).
var ErrClosed = fmt.Errorf("cluster: node closed: %w", fastrtc.ErrDraining)

// ErrNATSClosed is returned by Healthy, Admit and Forward once the node's NATS connection is
// closed for good (nats.go closes it on a protocol error, or after its reconnect attempts).
// It wraps fastrtc.ErrDraining: offers get FastRTC's draining refusal.
var ErrNATSClosed = fmt.Errorf("cluster: the NATS connection is closed: %w", fastrtc.ErrDraining)

// Healthy returns nil while the node's NATS connection is usable (connected, or trying to
// reconnect), and ErrNATSClosed once it is closed for good: the node then takes no session
// and forwards nothing. A load balancer's health check should take such a node out (the
// examples' /healthz answers 503).
func (n *Node) Healthy() error {
	if n.nc.IsClosed() {
		return ErrNATSClosed
	}
	return nil
}

// Connect dials NATS at url and joins the cluster; Close closes the connection.
func Connect(ctx context.Context, url string, opts Options) (*Node, error) {
	nc, err := nats.Connect(url, nats.Name("fastrtc "+opts.Name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to %s: %w", url, err)
	}
	n, err := Join(ctx, nc, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	n.ownNC = true
	return n, nil
}

// Join makes a node on nc, which stays the caller's (Close does not close it). It creates
// the cluster's key-value bucket if no node did yet, which needs JetStream on the server.
func Join(ctx context.Context, nc *nats.Conn, opts Options) (*Node, error) {
	if opts.Name == "" {
		opts.Name = "fastrtc"
	}
	for _, c := range opts.Name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("cluster: name %q: only letters, digits, - and _", opts.Name)
		}
	}
	if opts.Limit < 0 {
		return nil, fmt.Errorf("cluster: limit %d < 0", opts.Limit)
	}
	if opts.TTL == 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.TTL < 300*time.Millisecond {
		return nil, fmt.Errorf("cluster: TTL %v: at least 300ms", opts.TTL)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.NodeID == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		opts.NodeID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	bucket := "fastrtc_" + opts.Name
	if kv, err := js.KeyValue(ctx, bucket); err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("cluster: key-value bucket %s: %w", bucket, err)
		}
		if st.TTL() != opts.TTL {
			return nil, fmt.Errorf("cluster: the cluster's TTL is %v, this node's %v: give every node the same", st.TTL(), opts.TTL)
		}
	}
	kvCfg := jetstream.KeyValueConfig{
		Bucket: "fastrtc_" + opts.Name, Description: "fastrtc sessions and concurrency slots",
		History: 1, TTL: opts.TTL, Storage: jetstream.MemoryStorage,
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvCfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: key-value bucket fastrtc_%s: %w", opts.Name, err)
	}
	n := &Node{
		nc: nc, js: js, kvCfg: kvCfg, kv: kv, opts: opts, log: log.With("node", opts.NodeID),
		prefix:  "fastrtc." + opts.Name,
		held:    make(map[string]*held),
		slots:   make(map[int]slotState),
		rewatch: make(chan struct{}, 1),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if opts.Limit > 0 {
		if err := n.watchSlots(); err != nil {
			n.cancel()
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.heartbeat()
	return n, nil
}

// NodeID returns the node's name in the cluster.
func (n *Node) NodeID() string { return n.opts.NodeID }

// Attach is called by fastrtc.New: the node serves the requests other nodes forward for
// s's sessions, and answers Nodes listings.
func (n *Node) Attach(s *fastrtc.Stream) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.stream != nil {
		return errors.New("cluster: node already attached to a stream")
	}
	sub, err := n.nc.Subscribe(n.prefix+".nodes", func(m *nats.Msg) {
		b, _ := json.Marshal(NodeInfo{Node: n.opts.NodeID, Sessions: s.Stats().Sessions, Draining: s.Draining()})
		_ = m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribing: %w", err)
	}
	n.stream, n.nodesSub = s, sub
	n.updateOffersLocked()
	return nil
}

// updateOffersLocked keeps the node in the queue group of handed-over offers
// (fastrtc.<name>.offer) while its stream takes sessions, and out of it while full,
// draining or closed, so that a full node is not handed offers. n.mu is held.
func (n *Node) updateOffersLocked() {
	if n.stream == nil {
		return
	}
	want := !n.closed && !n.draining && n.stream.Accepting()
	switch {
	case want && n.offerSub == nil:
		s := n.stream
		sub, err := n.nc.QueueSubscribe(n.prefix+".offer", "offers", func(m *nats.Msg) { n.serve(s, m) })
		if err != nil {
			n.log.Warn("subscribing for handed-over offers", "err", err)
			return
		}
		n.offerSub = sub
	case !want && n.offerSub != nil:
		_ = n.offerSub.Unsubscribe()
		n.offerSub = nil
	}
}

func (n *Node) updateOffers() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.updateOffersLocked()
}

// Nodes lists the cluster's live nodes, waiting up to wait for their answers.
func (n *Node) Nodes(ctx context.Context, wait time.Duration) ([]NodeInfo, error) {
	inbox := n.nc.NewInbox()
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.PublishRequest(n.prefix+".nodes", inbox, nil); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []NodeInfo
	for {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return out, fmt.Errorf("cluster: listing nodes: %w", ctx.Err())
			}
			return out, nil // the wait is over
		}
		var ni NodeInfo
		if json.Unmarshal(m.Data, &ni) == nil && ni.Node != "" {
			out = append(out, ni)
		}
	}
}

// Sessions lists the cluster's sessions: id -> the node that holds it (from the bucket's
// s.<id> keys; a dead node's stay listed until they expire, within the TTL).
func (n *Node) Sessions(ctx context.Context) (map[string]string, error) {
	w, err := n.kv.Watch(ctx, "s.*")
	if err != nil {
		return nil, fmt.Errorf("cluster: listing sessions: %w", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]string{}
	for {
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("cluster: listing sessions: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil // the current values are in
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			id, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.Key(), "s."))
			if err == nil {
				node, _, _ := strings.Cut(string(e.Value()), " ")
				out[string(id)] = node
			}
		}
	}
}

// sessionKey is the KV key and subject token of a session id (ids may hold '.', which NATS
// takes as a token separator).
func sessionToken(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func (n *Node) subject(id string) string { return n.prefix + ".s." + sessionToken(id) }

// Admit reserves id cluster-wide (a second node admitting the same id gets
// fastrtc.ErrConnectionExists), takes a slot under the cluster's limit (or refuses with a
// *fastrtc.LimitError), and routes the cluster's requests for id to this node until leave.
func (n *Node) Admit(ctx context.Context, id string) (leave func(), err error) {
	n.mu.Lock()
	closed, s := n.closed, n.stream
	n.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := fastrtc.CheckID(id); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := n.Healthy(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, n.opts.RequestTimeout)
	defer cancel()
	tok := sessionToken(id)
	// The keys' values name this node and this session instance: a later session with the
	// same id (after this one ended) never mistakes this one's keys for its own.
	var r [6]byte
	_, _ = rand.Read(r[:])
	inst := n.opts.NodeID + " " + hex.EncodeToString(r[:])
	h := &held{slot: -1, idVal: []byte(inst), slotVal: []byte(tok + " " + inst)}
	rev, err := n.claim(ctx, "s."+tok, h.idVal)
	if bucketGone(err) { // NATS restarted and lost it: make it again, then try once more
		n.ensureBucket()
		rev, err = n.claim(ctx, "s."+tok, h.idVal)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("%w: %q (on another node)", fastrtc.ErrConnectionExists, id)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: reserving session %q: %w", id, err)
	}
	h.sessRev = rev
	fail := func(err error) (func(), error) {
		n.release(id, h)
		return nil, err
	}
	if n.opts.Limit > 0 {
		if err := n.takeSlot(ctx, h); err != nil {
			return fail(err)
		}
	}
	h.sub, err = n.nc.Subscribe(n.subject(id), func(m *nats.Msg) { n.serve(s, m) })
	if err != nil {
		return fail(fmt.Errorf("cluster: subscribing for session %q: %w", id, err))
	}
	// The interest must be on the server before the offer is answered: the client's next
	// request may reach another node at once.
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return fail(fmt.Errorf("cluster: %w", err))
	}
	n.mu.Lock()
	if n.closed { // Close ran meanwhile: it did not see this one
		n.mu.Unlock()
		return fail(ErrClosed)
	}
	n.held[id] = h
	n.updateOffersLocked() // full now? then out of the queue group
	n.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { n.release(id, h) }) }, nil
}

// release gives back what session id holds.
func (n *Node) release(id string, h *held) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	n.mu.Lock()
	if n.held[id] == h {
		delete(n.held, id)
	}
	n.mu.Unlock()
	if h.sub != nil {
		_ = h.sub.Unsubscribe()
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.RequestTimeout)
	defer cancel()
	tok := sessionToken(id)
	if h.slot >= 0 {
		if err := n.deleteOwn(ctx, slotKey(h.slot), h.slotVal, h.slotRev); err != nil {
			n.log.Debug("freeing slot", "slot", h.slot, "err", err)
		}
		n.mu.Lock()
		n.slots[h.slot] = slotState{}
		n.mu.Unlock()
	}
	if err := n.deleteOwn(ctx, "s."+tok, h.idVal, h.sessRev); err != nil {
		n.log.Debug("freeing session id", "session", id, "err", err)
	}
	n.updateOffers() // room again: back in the queue group of handed-over offers
}

func slotKey(k int) string { return "slot." + strconv.Itoa(k) }

// claim creates key with value. A create that the server applied but whose reply was lost
// (a timeout) fails, or fails again as ErrKeyExists when retried: when the key holds this
// very value, claim takes it over (an update on the revision read) instead.
func (n *Node) claim(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := n.kv.Create(ctx, key, value)
	if err == nil {
		return rev, nil
	}
	if e, gerr := n.kv.Get(ctx, key); gerr == nil && string(e.Value()) == string(value) {
		if rev, uerr := n.kv.Update(ctx, key, value, e.Revision()); uerr == nil {
			return rev, nil
		}
	}
	return 0, err
}

// deleteOwn deletes key if it still holds value: on the revision this node last wrote, or,
// when that is stale (a refresh applied whose reply was lost), on the revision read.
func (n *Node) deleteOwn(ctx context.Context, key string, value []byte, rev uint64) error {
	err := n.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if err == nil {
		return nil
	}
	e, gerr := n.kv.Get(ctx, key)
	switch {
	case errors.Is(gerr, jetstream.ErrKeyNotFound):
		return nil // expired, or deleted already
	case gerr != nil:
		return errors.Join(err, gerr)
	case string(e.Value()) != string(value):
		return nil // another session's now
	}
	return n.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
}

// takeSlot takes a free slot: it tries the slots this node's view holds free, from a
// random one on (so that nodes admitting at once rarely race for the same), each with an
// atomic create; a slot another node took meanwhile only fails that create.
func (n *Node) takeSlot(ctx context.Context, h *held) error {
	var r [2]byte
	_, _ = rand.Read(r[:])
	start := (int(r[0])<<8 | int(r[1])) % n.opts.Limit
	for i := 0; i < n.opts.Limit; i++ {
		k := (start + i) % n.opts.Limit
		if !n.slotFree(k) {
			continue
		}
		rev, err := n.claim(ctx, slotKey(k), h.slotVal)
		if err == nil {
			h.slot, h.slotRev = k, rev
			n.mu.Lock()
			n.slots[k] = slotState{taken: true, at: time.Now()}
			n.mu.Unlock()
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("cluster: taking a slot: %w", err)
		}
		// Taken: learn when it was written (it may be a dead node's, expiring soon).
		at := time.Now()
		if e, err := n.kv.Get(ctx, slotKey(k)); err == nil {
			at = e.Created()
		}
		n.mu.Lock()
		n.slots[k] = slotState{taken: true, at: at}
		n.mu.Unlock()
	}
	// Every slot looks taken. Check the one written longest ago (a view can lag: a
	// reconnect, an expiry nobody announced), one read per refusal at most.
	oldest, at := -1, time.Now()
	n.mu.Lock()
	for k := 0; k < n.opts.Limit; k++ {
		if st := n.slots[k]; st.taken && st.at.Before(at) {
			oldest, at = k, st.at
		}
	}
	n.mu.Unlock()
	if oldest >= 0 {
		if _, err := n.kv.Get(ctx, slotKey(oldest)); errors.Is(err, jetstream.ErrKeyNotFound) {
			if rev, err := n.kv.Create(ctx, slotKey(oldest), h.slotVal); err == nil {
				h.slot, h.slotRev = oldest, rev
				n.mu.Lock()
				n.slots[oldest] = slotState{taken: true, at: time.Now()}
				n.mu.Unlock()
				return nil
			}
		}
	}
	return &fastrtc.LimitError{Limit: n.opts.Limit, Scope: wire.ReasonCluster}
}

// slotFree reports whether this node's view holds slot k free: never taken, freed, or not
// refreshed for longer than the TTL (its node died; the bucket expires it).
func (n *Node) slotFree(k int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.slots[k]
	return !st.taken || time.Since(st.at) > n.opts.TTL
}

// watchSlots keeps the node's view of the slots current.
func (n *Node) watchSlots() error {
	// The watch lives as long as the node: its subscription is bound to the context given
	// here (a Join context that ends would stop the updates, leaving a stale view).
	w, err := n.kv.Watch(n.ctx, "slot.*")
	if err != nil {
		return fmt.Errorf("cluster: watching slots: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			ended := n.followSlots(w)
			_ = w.Stop()
			if n.ctx.Err() != nil {
				return
			}
			if ended { // not asked to: do not spin on a watch that keeps ending
				select {
				case <-n.ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			// The bucket was made again (or the watch ended): start over from what it holds.
			for {
				if w, err = n.kv.Watch(n.ctx, "slot.*"); err == nil {
					break
				}
				n.log.Warn("watching slots", "err", err)
				select {
				case <-n.ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			n.mu.Lock()
			clear(n.slots) // the watch replays every slot the bucket holds
			n.mu.Unlock()
		}
	}()
	return nil
}

// followSlots keeps this node's view of the slots from w's updates until the node closes,
// the bucket is made again, or the watch ends (ended true).
func (n *Node) followSlots(w jetstream.KeyWatcher) (ended bool) {
	for {
		select {
		case <-n.ctx.Done():
			return false
		case <-n.rewatch:
			return false
		case e, ok := <-w.Updates():
			if !ok {
				return true
			}
			if e == nil {
				continue // the initial values are in
			}
			k, err := strconv.Atoi(strings.TrimPrefix(e.Key(), "slot."))
			if err != nil {
				continue
			}
			n.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				n.slots[k] = slotState{taken: true, at: e.Created()}
			} else {
				n.slots[k] = slotState{}
			}
			n.mu.Unlock()
		}
	}
}

// bucketGone reports whether err means the key-value bucket does not exist (any more).
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// ensureBucket creates the key-value bucket again when it is gone: it lives in the NATS
// server's memory, so a restarted server (a single one, or a whole cluster) has lost it,
// and with it every node's keys. The heartbeat that follows writes this node's keys again
// (rewrite creates a missing key), and the slot watch starts over.
func (n *Node) ensureBucket() {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.TTL/3)
	defer cancel()
	st, err := n.kv.Status(ctx)
	if err == nil {
		// Made again by another node? Then the slot watch, on the bucket that was, starts over.
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
			created := bs.StreamInfo().Created
			n.mu.Lock()
			again := !n.bucketMade.IsZero() && !created.Equal(n.bucketMade)
			n.bucketMade = created
			n.mu.Unlock()
			if again {
				n.log.Warn("the key-value bucket was made again (NATS restarted?); this node's keys follow", "bucket", n.kvCfg.Bucket)
				n.signalRewatch()
			}
		}
		return
	}
	if !bucketGone(err) {
		return
	}
	if _, err := n.js.CreateOrUpdateKeyValue(ctx, n.kvCfg); err != nil {
		n.log.Warn("the key-value bucket is gone, and creating it again failed", "bucket", n.kvCfg.Bucket, "err", err)
		return
	}
	n.log.Warn("the key-value bucket was gone (NATS restarted?): created it again; this node's keys follow", "bucket", n.kvCfg.Bucket)
	n.signalRewatch()
}

func (n *Node) signalRewatch() {
	select {
	case n.rewatch <- struct{}{}:
	default:
	}
}

// heartbeat refreshes the keys of this node's sessions every TTL/3, so that they outlive
// the bucket's TTL only while the node lives.
func (n *Node) heartbeat() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.ensureBucket()
		n.mu.Lock()
		n.updateOffersLocked() // back in the queue group once sessions ended
		ids := make([]string, 0, len(n.held))
		hs := make([]*held, 0, len(n.held))
		for id, h := range n.held {
			ids, hs = append(ids, id), append(hs, h)
		}
		n.mu.Unlock()
		// In parallel (at most 16 at once), each bounded by TTL/3: one slow update must
		// not make the others' keys expire.
		sem := make(chan struct{}, 16)
		var wg sync.WaitGroup
		for i, h := range hs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				n.refresh(ids[i], h)
			}()
		}
		wg.Wait()
	}
}

// refresh rewrites one session's keys (an update with the last revision: a key that
// expired and was taken by another node meanwhile is not overwritten).
func (n *Node) refresh(id string, h *held) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.gone {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.TTL/3)
	defer cancel()
	tok := sessionToken(id)
	lost := ""
	if rev, ok := n.rewrite(ctx, "s."+tok, h.idVal, h.sessRev); ok {
		h.sessRev = rev
	} else if n.ctx.Err() == nil {
		lost = "its id is held by another node"
	}
	if h.slot >= 0 && lost == "" {
		if rev, ok := n.rewrite(ctx, slotKey(h.slot), h.slotVal, h.slotRev); ok {
			h.slotRev = rev
			n.mu.Lock()
			n.slots[h.slot] = slotState{taken: true, at: time.Now()}
			n.mu.Unlock()
		} else if n.ctx.Err() == nil {
			lost = "its cluster slot was taken by another node"
		}
	}
	if lost == "" {
		return
	}
	// The keys expired (NATS unreachable for longer than the TTL) and another node took
	// them: keeping the session would break the limit or the ids' uniqueness.
	n.log.Error("ending a session that lost its cluster admission", "session", id, "why", lost)
	n.mu.Lock()
	st := n.stream
	n.mu.Unlock()
	if st != nil {
		if sess, err := st.Session(id); err == nil {
			go sess.End("cluster admission lost: " + lost)
		}
	}
}

// rewrite refreshes one of this node's keys: an update on the revision it last wrote. When
// that fails (an update applied whose reply was lost, or the key expired), it reads the
// key: still ours, it updates on the revision read; gone, it creates it again. ok is false
// only when another node holds the key now; other failures (NATS unreachable, a timeout)
// keep the key as it is, to be tried again next beat.
func (n *Node) rewrite(ctx context.Context, key string, value []byte, rev uint64) (uint64, bool) {
	if r, err := n.kv.Update(ctx, key, value, rev); err == nil {
		return r, true
	}
	e, err := n.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		r, err := n.kv.Create(ctx, key, value)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return n.rewriteTaken(ctx, key, value, rev)
		}
		if err != nil {
			n.log.Warn("refreshing a key", "key", key, "err", err)
			return rev, true
		}
		return r, true
	case err != nil:
		n.log.Warn("refreshing a key", "key", key, "err", err)
		return rev, true // NATS unreachable: try again next beat
	case string(e.Value()) == string(value):
		r, err := n.kv.Update(ctx, key, value, e.Revision())
		if err != nil {
			n.log.Warn("refreshing a key", "key", key, "err", err)
			return rev, true
		}
		return r, true
	}
	return rev, false
}

// rewriteTaken is rewrite's answer when the key, gone a moment ago, was created again before
// this node could: ours (a create applied whose reply was lost) or another node's.
func (n *Node) rewriteTaken(ctx context.Context, key string, value []byte, rev uint64) (uint64, bool) {
	e, err := n.kv.Get(ctx, key)
	if err != nil {
		return rev, true
	}
	if string(e.Value()) != string(value) {
		return rev, false
	}
	return e.Revision(), true
}

// Drain drains the node's stream (fastrtc.Stream.Drain: no new sessions; the live ones end
// by themselves or, when ctx is done, with end_stream), then leaves the cluster (Close).
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	s := n.stream
	n.draining = true
	n.updateOffersLocked() // no more handed-over offers: this node hands its own to the others
	n.mu.Unlock()
	_ = n.nc.FlushWithContext(ctx)
	var err error
	if s != nil {
		err = s.Drain(ctx)
	}
	return errors.Join(err, n.Close())
}

// Close leaves the cluster: it stops answering for this node's sessions, frees their
// slots and ids, waits for its goroutines, and closes the NATS connection if Connect made
// it. It is idempotent. Close the Stream first (or Drain): its sessions then leave first.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	left := make(map[string]*held, len(n.held))
	for id, h := range n.held {
		left[id] = h
	}
	sub := n.nodesSub
	n.updateOffersLocked()
	n.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	for id, h := range left {
		n.release(id, h)
	}
	n.cancel()
	n.wg.Wait()
	if n.ownNC {
		n.nc.Close()
	}
	return nil
}

// The headers of the replies that carry a forwarded response.
const (
	hdrStatus  = "Fastrtc-Status" // the HTTP status (first reply)
	hdrCancel  = "Fastrtc-Cancel" // the subject the requester publishes to when it goes away (first reply)
	hdrEnd     = "Fastrtc-End"    // the last reply
	hdrAlive   = "Fastrtc-Alive"  // a keepalive of an idle stream
	hdrPrefix  = "Http-"          // the response's HTTP headers
	maxPayload = 512 << 10        // a reply's body part, under NATS's default 1 MB
)

var _ fastrtc.Cluster = (*Node)(nil)

// serve answers one forwarded request on this node (on its own goroutine: a streamed
// response lasts as long as the session).
func (n *Node) serve(s *fastrtc.Stream, m *nats.Msg) {
	var f fastrtc.Forwarded
	if err := json.Unmarshal(m.Data, &f); err != nil || m.Reply == "" {
		n.log.Warn("malformed forwarded request", "subject", m.Subject, "err", err)
		return
	}
	n.mu.Lock()
	if n.closed { // its subscriptions are going: say so now rather than let the requester wait
		n.mu.Unlock()
		cw := &replyWriter{n: n, reply: m.Reply, header: http.Header{}}
		http.Error(cw, ErrClosed.Error(), http.StatusServiceUnavailable)
		cw.finish()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithCancel(n.ctx)
		defer cancel()
		cw := &replyWriter{n: n, reply: m.Reply, header: http.Header{}}
		if f.Route == fastrtc.RouteOutputs { // a stream: the requester may go away first
			cancelSub, err := n.nc.Subscribe(n.nc.NewInbox(), func(*nats.Msg) { cancel() })
			if err == nil {
				cw.cancelSubj = cancelSub.Subject
				defer func() { _ = cancelSub.Unsubscribe() }()
			}
			stop := cw.keepalive(ctx)
			defer stop()
		}
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		s.ServeForwarded(cw, r, f)
		if f.Route == fastrtc.RouteOffer {
			// Full or draining now? Out of the queue group before the answer goes (the same
			// connection: the server sees the unsubscribe first), so a retry goes elsewhere.
			n.updateOffers()
		}
		cw.finish()
	}()
}

// offerHandOvers is how many nodes of the queue group a handed-over offer tries: a node
// may still be in the group for a moment after it filled up or began to drain, and then
// refuses; the next try goes to another (the refusing node left the group meanwhile).
const offerHandOvers = 4

// refusedByNode reports whether body is FastRTC's refusal of a node that is full or
// draining (not of the cluster's limit: no other node would take it either).
func refusedByNode(status int, body []byte) bool {
	if status != http.StatusOK || !bytes.Contains(body, []byte(`"`+wire.StatusFailed+`"`)) {
		return false
	}
	var r wire.Failure
	return json.Unmarshal(body, &r) == nil && r.Status == wire.StatusFailed && (r.Meta.Reason == wire.ReasonNode || r.Meta.Reason == wire.ReasonDraining)
}

// replyWriter is the http.ResponseWriter of a forwarded request: what the route writes goes
// back to the requester as NATS messages, in order, one per Flush (and one at the end).
type replyWriter struct {
	n          *Node
	reply      string
	cancelSubj string
	header     http.Header

	mu     sync.Mutex
	status int
	sent   bool // the first reply (status and headers) went
	buf    []byte
	done   bool
}

func (w *replyWriter) Header() http.Header { return w.header }

func (w *replyWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = code
	}
}

func (w *replyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf = append(w.buf, p...)
	for len(w.buf) > maxPayload {
		if err := w.publishLocked(w.buf[:maxPayload], ""); err != nil {
			return 0, err
		}
		w.buf = w.buf[maxPayload:]
	}
	return len(p), nil
}

// Flush sends what was written so far.
func (w *replyWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = w.publishLocked(w.buf, "")
	w.buf = nil
}

// FlushError is Flush for http.ResponseController.
func (w *replyWriter) FlushError() error {
	w.Flush()
	return nil
}

// SetWriteDeadline is accepted and ignored (http.ResponseController): the requester's
// node bounds its own client's writes.
func (w *replyWriter) SetWriteDeadline(time.Time) error { return nil }

// finish sends the last reply.
func (w *replyWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = w.publishLocked(w.buf, hdrEnd)
	w.buf, w.done = nil, true
}

func (w *replyWriter) publishLocked(body []byte, mark string) error {
	m := nats.NewMsg(w.reply)
	m.Data = body
	if !w.sent {
		m.Header.Set(hdrStatus, strconv.Itoa(w.status))
		if w.cancelSubj != "" {
			m.Header.Set(hdrCancel, w.cancelSubj)
		}
		for k, vs := range w.header {
			for _, v := range vs {
				m.Header.Add(hdrPrefix+k, v)
			}
		}
		m.Header.Set(hdrPrefix+fastrtc.NodeHeader, w.n.opts.NodeID)
		w.sent = true
	}
	if mark != "" {
		m.Header.Set(mark, "1")
	}
	return w.n.nc.PublishMsg(m)
}

// keepalive sends a keepalive every 2 s (RequestTimeout/3 if shorter) while the response streams (the requester
// takes a silent stream for a dead node).
func (w *replyWriter) keepalive(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(min(2*time.Second, w.n.opts.RequestTimeout/3))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.mu.Lock()
			if w.sent && !w.done {
				// Its reply subject is the cancel subject: when the requester's inbox is
				// gone (its node died, or stopped reading), NATS answers "no responders"
				// there, and the stream stops.
				m := nats.NewMsg(w.reply)
				m.Reply = w.cancelSubj
				m.Header.Set(hdrAlive, "1")
				_ = w.n.nc.PublishMsg(m)
			}
			w.mu.Unlock()
		}
	}()
	return func() { cancel(); <-done }
}

// Forward serves f from the node that holds f.ID: it sends f to the session's subject and
// writes the replies to w as they come (flushing w after each for streamed routes). When no
// node holds f.ID it retries until f.Wait has passed, then returns an error wrapping
// fastrtc.ErrUnknownConnection, having written nothing.
func (n *Node) Forward(ctx context.Context, f fastrtc.Forwarded, w http.ResponseWriter) error {
	// A subject over the server's control-line limit (4 KiB) gets -ERR, and nats.go then
	// closes the connection for good: no id that was not checked makes a subject.
	if err := fastrtc.CheckID(f.ID); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if err := n.Healthy(); err != nil {
		return err
	}
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	deadline := time.Now().Add(f.Wait)
	backoff := 10 * time.Millisecond
	once := n.forwardOnce
	if f.Route != fastrtc.RouteOutputs {
		once = n.requestOnce
	}
	for {
		done, err := once(ctx, f, body, w)
		if done || err != nil {
			return err
		}
		if time.Now().Add(backoff).After(deadline) {
			return fmt.Errorf("%w: %q (no node holds it)", fastrtc.ErrUnknownConnection, f.ID)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %q: %w", fastrtc.ErrUnknownConnection, f.ID, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// requestOnce sends f once as a plain NATS request (the connection's shared reply
// subscription: no subscription per request) and writes the one reply; done is false when
// no node holds the session. For routes whose answer is one message.
func (n *Node) requestOnce(ctx context.Context, f fastrtc.Forwarded, body []byte, w http.ResponseWriter) (done bool, err error) {
	subj := n.subject(f.ID)
	if f.Route == fastrtc.RouteOffer {
		subj = n.prefix + ".offer"
	}
	req := nats.NewMsg(subj)
	req.Data = body
	wait := n.opts.RequestTimeout
	if f.Route == fastrtc.RouteOffer { // the other node answers within fastrtc.OfferTimeout
		wait = max(wait, fastrtc.OfferTimeout+2*time.Second)
	}
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var m *nats.Msg
	var status int
	for try := 1; ; try++ {
		var err error
		m, err = n.nc.RequestMsgWithContext(rctx, req)
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("cluster: session %q: its node did not answer: %w", f.ID, err)
		}
		status, err = strconv.Atoi(m.Header.Get(hdrStatus))
		if err != nil || m.Header.Get(hdrEnd) == "" {
			return false, fmt.Errorf("cluster: session %q: malformed reply", f.ID)
		}
		if f.Route != fastrtc.RouteOffer || try == offerHandOvers || !refusedByNode(status, m.Data) {
			break
		}
		n.log.Debug("handed-over offer refused by a full or draining node: trying another", "session", f.ID, "node", m.Header.Get(hdrPrefix+fastrtc.NodeHeader))
	}
	copyHeaders(w, m)
	w.WriteHeader(status)
	_, _ = w.Write(m.Data)
	return true, nil
}

// copyHeaders copies a reply's HTTP headers to w.
func copyHeaders(w http.ResponseWriter, m *nats.Msg) {
	for k, vs := range m.Header {
		if name, ok := strings.CutPrefix(k, hdrPrefix); ok {
			for _, v := range vs {
				w.Header().Add(name, v)
			}
		}
	}
}

// forwardOnce sends f once; done is false when no node holds the session.
func (n *Node) forwardOnce(ctx context.Context, f fastrtc.Forwarded, body []byte, w http.ResponseWriter) (done bool, err error) {
	inbox := n.nc.NewInbox()
	// A synchronous subscription queues what arrives while w is slow, in order, up to
	// NATS's pending limits (64 MB); past them the stream is stopped (ErrSlowConsumer).
	sub, err := n.nc.SubscribeSync(inbox)
	if err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req := nats.NewMsg(n.subject(f.ID))
	req.Reply, req.Data = inbox, body
	if err := n.nc.PublishMsg(req); err != nil {
		return false, fmt.Errorf("cluster: %w", err)
	}
	var cancelSubj string
	ended := false
	defer func() {
		if cancelSubj != "" && !ended {
			_ = n.nc.Publish(cancelSubj, nil) // we stop reading: stop the stream there
		}
	}()
	rc := http.NewResponseController(w)
	first := true
	for {
		mctx, cancel := context.WithTimeout(ctx, n.opts.RequestTimeout)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return false, nil
		case err != nil && ctx.Err() != nil:
			if first {
				return false, fmt.Errorf("cluster: session %q: %w", f.ID, ctx.Err())
			}
			return true, nil // our client went away
		case err != nil && first:
			return false, fmt.Errorf("cluster: session %q: its node did not answer within %v: %w", f.ID, n.opts.RequestTimeout, err)
		case errors.Is(err, nats.ErrSlowConsumer):
			n.log.Warn("forwarded stream: its reader is too slow, replies were dropped; stopping it", "session", f.ID, "route", f.Route)
			return true, nil
		case err != nil:
			n.log.Warn("forwarded stream went silent: its node is gone?", "session", f.ID, "route", f.Route, "after", n.opts.RequestTimeout)
			return true, nil
		}
		if first {
			status, err := strconv.Atoi(m.Header.Get(hdrStatus))
			if err != nil {
				return false, fmt.Errorf("cluster: session %q: malformed reply", f.ID)
			}
			cancelSubj = m.Header.Get(hdrCancel)
			copyHeaders(w, m)
			w.WriteHeader(status)
			first = false
		}
		if m.Header.Get(hdrAlive) != "" {
			continue
		}
		if len(m.Data) > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second)) // a client that stops reading is dropped
			if _, err := w.Write(m.Data); err != nil {
				return true, nil // our client went away
			}
		}
		if m.Header.Get(hdrEnd) != "" {
			ended = true
			return true, nil
		}
		_ = rc.Flush()
	}
}
