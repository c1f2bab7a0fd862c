package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"iter"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/voiceenv"
	"github.com/fastrtc-go/fastrtc/voice"
)

// turnsReply is GET /probe/turns: one session's turns and incoming audio figures.
type turnsReply struct {
	ID          string       `json:"id"`
	Turns       []recordTurn `json:"turns"`
	PacketsIn   uint64       `json:"packetsIn"`
	PacketsLost int64        `json:"packetsLost"`
	JitterMs    float64      `json:"jitterMs"`
	AudioInS    float64      `json:"audioInS"`
}

// recordTurn is one utterance as the handler got it: PCM, 16-bit little-endian, base64.
type recordTurn struct {
	Rate int    `json:"rate"`
	PCM  string `json:"pcm"`
}

// recorder keeps every session's turns.
type recorder struct {
	mu       sync.Mutex
	sessions map[string]*recorded
	last     string
}

type recorded struct {
	sess  *fastrtc.Session
	turns []recordTurn
}

func (r *recorder) reply(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	b := make([]byte, 2*len(utt.Samples))
	for i, v := range utt.Samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	r.mu.Lock()
	rec := r.sessions[s.ID()]
	if rec == nil {
		rec = &recorded{sess: s}
		r.sessions[s.ID()] = rec
	}
	rec.turns = append(rec.turns, recordTurn{Rate: utt.SampleRate, PCM: base64.StdEncoding.EncodeToString(b)})
	r.last = s.ID()
	r.mu.Unlock()
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		k := 0
		for range 15 { // 0.3 s of 660 Hz
			f := make([]float32, 960)
			for i := range f {
				f[i] = float32(0.3 * math.Sin(2*math.Pi*660*float64(k)/48000))
				k++
			}
			if !yield(fastrtc.AudioFromFloat32(48000, 1, f), nil) {
				return
			}
		}
	}
}

// serveTurns answers GET /probe/turns?id=ID (default: the session that spoke last).
func (r *recorder) serveTurns(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	id := req.URL.Query().Get("id")
	if id == "" {
		id = r.last
	}
	rec := r.sessions[id]
	var out turnsReply
	if rec != nil {
		out = turnsReply{ID: id, Turns: append([]recordTurn{}, rec.turns...)}
	}
	r.mu.Unlock()
	if rec == nil {
		http.Error(w, "no turns for session "+id, http.StatusNotFound)
		return
	}
	st := rec.sess.Stats()
	out.PacketsIn, out.PacketsLost = st.PacketsIn, st.PacketsLost
	out.JitterMs = float64(st.Jitter.Microseconds()) / 1000
	out.AudioInS = st.AudioIn.Seconds()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "listen address")
	loopback := fs.Bool("loopback", false, "gather ICE candidates on loopback only (a run without namespaces)")
	_ = fs.Parse(args)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := &recorder{sessions: map[string]*recorded{}}
	opts := []fastrtc.Option{fastrtc.WithLogger(log)}
	if *loopback {
		opts = append(opts, fastrtc.WithSettingEngine(loopbackOnly))
	}
	vad, err := voiceenv.Detector() // FASTRTC_SILERO_MODEL: the Silero VAD
	if err != nil {
		return err
	}
	stream, err := fastrtc.New(voice.NewReplyOnPause(rec.reply, vad...), fastrtc.Audio, fastrtc.SendReceive, opts...)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", stream.Handler())
	mux.HandleFunc("GET /probe/turns", rec.serveTurns)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = stream.Shutdown(sctx)
		_ = srv.Shutdown(sctx)
	}()
	log.Info("voiceprobe listening", "url", "http://"+ln.Addr().String()+"/")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopbackOnly restricts ICE to IPv4 loopback.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}
