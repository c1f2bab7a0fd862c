// Command e2eserver serves the streams that the headless-Chromium tests (e2e/) and the
// latency harness drive through the built-in page. It is a test tool, not an example.
//
//	go run ./cmd/e2eserver -kind flip               # one stream at /, its page at http://127.0.0.1:8000/
//	go run ./cmd/e2eserver -kind all                # every kind under /<kind>/, an index at /
//	go run ./cmd/e2eserver -kind identity,forward   # what e2e/latency.sh measures
//
// Kinds (see kinds below for what each handler does):
//
//	flip          video send-receive: the camera comes back upside down
//	inputs        video send-receive with one input of each kind and three outputs
//	echo          audio send-receive: the microphone comes back unchanged
//	pause         audio send-receive with ReplyOnPause: each utterance gets a 660 Hz reply
//	video-source  video receive: a generated picture (red | blue halves, a moving white bar)
//	audio-source  audio receive: a generated 880 Hz tone
//	send          video send: outputs only (mean luma and frame count of the camera)
//	error         video send-receive that fails when its "fail" checkbox is ticked
//	limit         video send-receive flip, concurrency limit 1, time limit 6 s
//	av            audio-video send-receive: audio echoed, video flipped
//	identity      video send-receive returning each frame unchanged (latency harness)
//	stall         video send-receive whose server gathers no ICE candidates, so that it never
//	              connects (the page's "ICE is taking long" message); connect timeout 8 s
//	forward       not a fastrtc stream: plain pion forwarding the browser's VP8 RTP back
//	              without decoding, on the same offer protocol (the latency floor)
//	talk          audio send-receive: examples/talk's agent (PocketSphinx, espeak-ng, text box)
//	talk-wake     the same, answering only after "hello computer"
//	realtime      audio send-receive: the OpenAI Realtime bridge to a local fake model
//	              (GET /debug/realtime has what the model saw)
//
// GET /debug/stats returns {"<kind>": {"sessions": N, "codecs": N}, ..., "process":
// {"goroutines": N}} so that tests and cmd/soak can
// check that sessions end and free their codecs; GET /blank is an empty page.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"iter"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/internal/talkagent"
	"github.com/fastrtc-go/fastrtc/internal/voiceenv"
	"github.com/fastrtc-go/fastrtc/speech"
	"github.com/fastrtc-go/fastrtc/voice"
)

var allKinds = []string{"flip", "inputs", "echo", "pause", "video-source", "audio-source", "send", "error", "limit", "av", "identity", "stall", "forward", "talk", "talk-wake", "realtime"}

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	kindList := flag.String("kind", "flip", "comma-separated kinds, or \"all\": "+strings.Join(allKinds, ", "))
	verbose := flag.Bool("v", false, "debug logging")
	loopback := flag.Bool("loopback", true, "gather ICE candidates on loopback only (tests)")
	vp8Speed := flag.Int("vp8speed", 0, "libvpx cpu-used for the video streams (0: the library's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file until shutdown (load tests)")
	flag.Parse()
	fastrtc.LimitMallocArenas(1) // one malloc arena for the C codecs: RSS stays flat over rounds of sessions
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	kinds := strings.Split(*kindList, ",")
	if *kindList == "all" {
		kinds = allKinds
	}
	single := len(kinds) == 1
	mux := http.NewServeMux()
	streams := map[string]*fastrtc.Stream{}
	var forwarders []*forwarder
	for _, k := range kinds {
		prefix := "/" + k
		if single {
			prefix = ""
		}
		if k == "forward" {
			f, err := newForwarder(log.With("kind", k), *loopback)
			if err != nil {
				fatal(log, err)
			}
			forwarders = append(forwarders, f)
			mux.HandleFunc(prefix+"/webrtc/offer", f.serveOffer)
			if !single {
				mux.HandleFunc(prefix+"/{$}", serveBlank)
			}
			continue
		}
		opts := []fastrtc.Option{fastrtc.WithLogger(log.With("kind", k))}
		if *vp8Speed != 0 {
			opts = append(opts, fastrtc.WithVP8Speed(*vp8Speed))
		}
		if prefix != "" {
			opts = append(opts, fastrtc.WithPathPrefix(prefix))
		}
		switch {
		case k == "stall":
			opts = append(opts, fastrtc.WithSettingEngine(noCandidates))
		case *loopback:
			opts = append(opts, fastrtc.WithSettingEngine(loopbackOnly))
		}
		s, err := newStream(k, opts)
		if err != nil {
			fatal(log, err)
		}
		streams[k] = s
		h := s.Handler()
		if single {
			mux.Handle("/", h)
		} else {
			mux.Handle(prefix+"/", h)
		}
	}
	if !single {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!doctype html><meta charset=utf-8><title>fastrtc e2e server</title><h1>fastrtc e2e server</h1><ul>")
			for _, k := range kinds {
				fmt.Fprintf(w, "<li><a href=\"/%s/\">%s</a></li>", k, k)
			}
			fmt.Fprint(w, "</ul>")
		})
	}
	mux.HandleFunc("GET /blank", serveBlank)
	mux.HandleFunc("GET /debug/realtime", func(w http.ResponseWriter, r *http.Request) {
		if realtimeModel == nil {
			http.NotFound(w, r)
			return
		}
		realtimeModel.serveDebug(w, r)
	})
	mux.HandleFunc("GET /debug/stats", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{}
		for k, s := range streams {
			st := s.Stats()
			out[k] = map[string]int{"sessions": st.Sessions, "codecs": st.CodecContexts}
		}
		for _, f := range forwarders {
			out["forward"] = map[string]int{"sessions": f.live(), "codecs": 0}
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		out["process"] = map[string]int{"goroutines": runtime.NumGoroutine(),
			"go_heap_inuse_kb": int(ms.HeapInuse >> 10), "go_sys_kb": int(ms.Sys >> 10), "go_heap_released_kb": int(ms.HeapReleased >> 10)}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})

	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		fatal(log, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, s := range streams {
			_ = s.Shutdown(sctx)
		}
		for _, f := range forwarders {
			f.close()
		}
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	log.Info("e2eserver listening", "url", "http://"+ln.Addr().String()+"/", "kinds", strings.Join(kinds, ","))
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fatal(log, err)
	}
}

func fatal(log *slog.Logger, err error) {
	log.Error("e2eserver", "err", err)
	os.Exit(1)
}

func serveBlank(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, "<!doctype html><meta charset=utf-8><title>blank</title><body></body>")
}

// loopbackOnly keeps ICE on 127.0.0.1 (the tests run in a network namespace with only lo).
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// noCandidates leaves the server without ICE candidates: its answer cannot connect.
func noCandidates(se *webrtc.SettingEngine) {
	se.SetIPFilter(func(net.IP) bool { return false })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// talkEngines loads the speech engines once for the talk kinds (they live as long as the
// process).
var talkEngines = sync.OnceValues(func() (*talkagent.Agent, error) {
	stt, err := speech.NewPocketSphinx(speech.PocketSphinxOptions{Decoders: 2})
	if err != nil {
		return nil, err
	}
	tts, err := speech.NewEspeak(speech.EspeakOptions{})
	if err != nil {
		_ = stt.Close()
		return nil, err
	}
	return &talkagent.Agent{STT: stt, TTS: tts}, nil
})

// newStream builds the stream of one kind.
func newStream(kind string, opts []fastrtc.Option) (*fastrtc.Stream, error) {
	with := func(more ...fastrtc.Option) []fastrtc.Option { return append(slices.Clone(opts), more...) }
	flip := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) { return f.FlipVertical(), nil }
	switch kind {
	case "flip":
		return fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Flip", "Your camera goes to a Go handler, which sends it back upside down."),
			fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3).WithLabel("Confidence threshold")))...)
	case "identity":
		id := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) { return f.Image, nil }
		return fastrtc.New(fastrtc.VideoFunc(id), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Identity", "Every frame comes back unchanged (decode, handler, encode)."))...)
	case "inputs":
		return fastrtc.New(fastrtc.VideoFunc(inputsHandler), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Inputs and outputs", "The handler paints the top of the picture as the controls say, and reports what it did."),
			fastrtc.WithInputs(
				fastrtc.Slider("fill", 0, 1, 0.05, 0).WithLabel("Painted fraction (top)"),
				fastrtc.Dropdown("color", []string{"white", "black"}, "white").WithLabel("Paint color"),
				fastrtc.Checkbox("enabled", true).WithLabel("Paint"),
				fastrtc.Text("label", "").WithLabel("Text to echo"),
				fastrtc.Number("every", 10).WithRange(1, 100).WithLabel("Frames between outputs")),
			fastrtc.WithOutputs(
				fastrtc.Output{Name: "rows", Label: "Painted rows"},
				fastrtc.Output{Name: "label", Label: "Echoed text"},
				fastrtc.Output{Name: "frame", Label: "Frame"}))...)
	case "echo":
		echo := func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil }
		return fastrtc.New(fastrtc.AudioFunc(echo), fastrtc.Audio, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Echo", "Your microphone comes back unchanged."))...)
	case "pause":
		vad, err := voiceenv.Detector() // FASTRTC_SILERO_MODEL: the Silero VAD
		if err != nil {
			return nil, err
		}
		return fastrtc.New(voice.NewReplyOnPause(pauseReply, vad...), fastrtc.Audio, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Reply on pause", "Speak; when you pause, the server answers with a beep."),
			fastrtc.WithOutputs(fastrtc.Output{Name: "replies", Label: "Replies"},
				fastrtc.Output{Name: "utterance_s", Label: "Last utterance (s)"}))...)
	case "talk", "talk-wake": // examples/talk's agent: PocketSphinx in, espeak-ng out
		a, err := talkEngines()
		if err != nil {
			return nil, err
		}
		vad, err := voiceenv.Detector()
		if err != nil {
			return nil, err
		}
		wake := ""
		if kind == "talk-wake" {
			wake = "hello computer"
		}
		// The fake microphone plays espeak-ng's synthetic voice: Chrome's noise suppression
		// garbles it for PocketSphinx ("what is the weather today" became "what is not
		// whether to bury"), so these pages capture it unprocessed. The pause kind keeps
		// the voice-agent default (processing on) and checks it.
		more := append(talkagent.Options(wake), fastrtc.WithTrackConstraints(fastrtc.TrackConstraints{
			Audio: map[string]any{"echoCancellation": false, "noiseSuppression": false, "autoGainControl": false}}))
		return fastrtc.New(a.Handler(wake, vad...), fastrtc.Audio, fastrtc.SendReceive, with(more...)...)
	case "realtime":
		return realtimeStream(opts)
	case "video-source":
		return fastrtc.New(fastrtc.VideoSource(videoSource), fastrtc.Video, fastrtc.Receive, with(
			fastrtc.WithTitle("Video source", "The server generates the picture."))...)
	case "audio-source":
		return fastrtc.New(fastrtc.AudioSource(toneSource), fastrtc.Audio, fastrtc.Receive, with(
			fastrtc.WithTitle("Audio source", "The server plays an 880 Hz tone."))...)
	case "send":
		return fastrtc.New(fastrtc.VideoFunc(sendHandler), fastrtc.Video, fastrtc.Send, with(
			fastrtc.WithTitle("Send only", "The camera goes to the server, which only reports numbers."),
			fastrtc.WithOutputs(fastrtc.Output{Name: "frames", Label: "Frames seen"},
				fastrtc.Output{Name: "mean_luma", Label: "Mean luma"}))...)
	case "error":
		fail := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
			if s.Inputs().Bool("fail") {
				return nil, errors.New("requested failure (e2e)")
			}
			return f.Image, nil
		}
		return fastrtc.New(fastrtc.VideoFunc(fail), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Failing handler", "Tick the box and the handler returns an error."),
			fastrtc.WithInputs(fastrtc.Checkbox("fail", false).WithLabel("Fail now")))...)
	case "limit":
		return fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Limited", "One connection at a time, six seconds each."),
			fastrtc.WithConcurrencyLimit(1), fastrtc.WithTimeLimit(6*time.Second))...)
	case "stall":
		return fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive, with(
			fastrtc.WithTitle("Stalled", "This server cannot be reached over ICE."),
			fastrtc.WithConnectTimeout(8*time.Second))...)
	case "av":
		return fastrtc.New(fastrtc.AudioVideoHandlerFactory(func() fastrtc.AudioVideoHandler { return newAVEcho() }),
			fastrtc.AudioVideo, fastrtc.SendReceive, with(
				fastrtc.WithTitle("Audio and video", "Your microphone comes back unchanged and your camera upside down."))...)
	}
	return nil, fmt.Errorf("unknown kind %q (known: %s)", kind, strings.Join(allKinds, ", "))
}

// inputsHandler paints the top "fill" fraction of the frame in "color" when "enabled", and
// every "every" frames emits {"rows", "label", "frame"}.
//
// It paints a copy: the frame's image is the decoder's reference frame, so writing into it
// would corrupt the following frames.
func inputsHandler(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
	in := s.Inputs()
	img := scratchCopy(s, f.Image)
	rows := 0
	if in.Bool("enabled") {
		rows = int(math.Round(in.Float("fill") * float64(img.Rect.Dy())))
		y, cb, cr := uint8(235), uint8(128), uint8(128)
		if in.Text("color") == "black" {
			y = 16
		}
		w := img.Rect.Dx()
		for r := 0; r < rows; r++ {
			row := img.Y[r*img.YStride:][:w]
			for i := range row {
				row[i] = y
			}
		}
		for r := 0; r < (rows+1)/2; r++ {
			cw := (w + 1) / 2
			rb := img.Cb[r*img.CStride:][:cw]
			rr := img.Cr[r*img.CStride:][:cw]
			for i := range rb {
				rb[i], rr[i] = cb, cr
			}
		}
	}
	every := int(in.Float("every"))
	if every < 1 {
		every = 1
	}
	if f.Index%every == 0 {
		if err := s.Emit(map[string]any{"rows": rows, "label": in.Text("label"), "frame": f.Index}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

var scratch sync.Map // session id -> *image.YCbCr

// scratchCopy copies src into the session's reusable buffer.
func scratchCopy(s *fastrtc.Session, src *image.YCbCr) *image.YCbCr {
	v, _ := scratch.Load(s.ID())
	dst, _ := v.(*image.YCbCr)
	if dst == nil || dst.Rect != src.Rect || dst.SubsampleRatio != src.SubsampleRatio {
		dst = image.NewYCbCr(src.Rect, src.SubsampleRatio)
		if _, loaded := scratch.Swap(s.ID(), dst); !loaded {
			go func() { <-s.Done(); scratch.Delete(s.ID()) }()
		}
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	for y := 0; y < h; y++ {
		copy(dst.Y[y*dst.YStride:][:w], src.Y[y*src.YStride:][:w])
	}
	cw, ch := (w+1)/2, (h+1)/2
	for y := 0; y < ch; y++ {
		copy(dst.Cb[y*dst.CStride:][:cw], src.Cb[y*src.CStride:][:cw])
		copy(dst.Cr[y*dst.CStride:][:cw], src.Cr[y*src.CStride:][:cw])
	}
	return dst
}

// sendHandler reports the camera's mean luma and frame count every 10 frames.
func sendHandler(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
	if f.Index%10 == 0 {
		sum := 0
		b := f.Image.Rect
		for y := 0; y < b.Dy(); y++ {
			for _, v := range f.Image.Y[y*f.Image.YStride:][:b.Dx()] {
				sum += int(v)
			}
		}
		mean := float64(sum) / float64(b.Dx()*b.Dy())
		if err := s.Emit(map[string]any{"frames": f.Index + 1, "mean_luma": math.Round(mean*10) / 10}); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// videoSource yields 640x480 frames: left half red, right half blue, and a white bar 16
// rows tall moving down 8 rows a frame.
func videoSource(s *fastrtc.Session) iter.Seq2[image.Image, error] {
	return func(yield func(image.Image, error) bool) {
		const w, h = 640, 480
		img := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
		ry, rcb, rcr := color.RGBToYCbCr(200, 30, 30)
		by, bcb, bcr := color.RGBToYCbCr(30, 30, 200)
		for i := 0; ; i++ {
			bar := (i * 8) % h
			for y := 0; y < h; y++ {
				row := img.Y[y*img.YStride:][:w]
				for x := range row {
					switch {
					case y >= bar && y < bar+16:
						row[x] = 235
					case x < w/2:
						row[x] = ry
					default:
						row[x] = by
					}
				}
			}
			for y := 0; y < h/2; y++ {
				cb := img.Cb[y*img.CStride:][:w/2]
				cr := img.Cr[y*img.CStride:][:w/2]
				onBar := 2*y >= bar && 2*y < bar+16
				for x := range cb {
					switch {
					case onBar:
						cb[x], cr[x] = 128, 128
					case x < w/4:
						cb[x], cr[x] = rcb, rcr
					default:
						cb[x], cr[x] = bcb, bcr
					}
				}
			}
			if !yield(img, nil) {
				return
			}
		}
	}
}

// tone returns a 20 ms frame of a sine at freq Hz, continuing phase from *n.
func tone(freq float64, rate int, amp float64, n *int) fastrtc.AudioFrame {
	samples := make([]float32, rate/50)
	for i := range samples {
		samples[i] = float32(amp * math.Sin(2*math.Pi*freq*float64(*n)/float64(rate)))
		*n++
	}
	return fastrtc.AudioFromFloat32(rate, 1, samples)
}

// toneSource plays 880 Hz at 24 kHz, -10 dBFS peak, until the session ends.
func toneSource(s *fastrtc.Session) iter.Seq2[fastrtc.AudioFrame, error] {
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		n := 0
		for {
			if !yield(tone(880, 24000, 0.3, &n), nil) {
				return
			}
		}
	}
}

// pauseReply answers each utterance with half a second of 660 Hz and reports how many
// replies there were and how long the utterance was.
func pauseReply(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		n := replyCount(s)
		_ = s.Emit(map[string]any{"replies": n, "utterance_s": math.Round(utt.Duration().Seconds()*100) / 100})
		k := 0
		for range 25 { // 0.5 s
			if !yield(tone(660, 24000, 0.3, &k), nil) {
				return
			}
		}
	}
}

var replies sync.Map // session id -> *int

func replyCount(s *fastrtc.Session) int {
	v, loaded := replies.LoadOrStore(s.ID(), new(int))
	p := v.(*int)
	if !loaded {
		go func() { <-s.Done(); replies.Delete(s.ID()) }()
	}
	*p++ // replies of one session never run concurrently
	return *p
}

// avEcho echoes audio and flips video.
type avEcho struct{ ch chan fastrtc.AudioFrame }

func newAVEcho() *avEcho { return &avEcho{ch: make(chan fastrtc.AudioFrame, 50)} }

func (h *avEcho) Receive(s *fastrtc.Session, f fastrtc.AudioFrame) error {
	c := fastrtc.AudioFrame{SampleRate: f.SampleRate, Channels: f.Channels, Samples: slices.Clone(f.Samples)}
	select {
	case h.ch <- c:
	default: // output side is behind: drop
	}
	return nil
}

func (h *avEcho) Emit(ctx context.Context, s *fastrtc.Session) (fastrtc.AudioFrame, error) {
	select {
	case f := <-h.ch:
		return f, nil
	case <-ctx.Done():
		return fastrtc.AudioFrame{}, ctx.Err()
	}
}

func (h *avEcho) Video(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
	return f.FlipVertical(), nil
}
