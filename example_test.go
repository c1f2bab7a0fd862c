package fastrtc_test

import (
	"fmt"
	"image"
	"iter"
	"net/http"

	"github.com/fastrtc-go/fastrtc"
)

// The seed's first example: flip the webcam vertically, with a conf_threshold slider.
func Example() {
	flip := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		return f.FlipVertical(), nil
	}
	stream, err := fastrtc.New(fastrtc.VideoFunc(flip), fastrtc.Video, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3)))
	if err != nil {
		panic(err)
	}
	defer stream.Close()

	mux := http.NewServeMux()
	stream.Mount(mux) // POST /webrtc/offer, POST /input_hook, GET /outputs, ...
	fmt.Println(stream.Modality(), stream.Mode())
	// http.ListenAndServe("127.0.0.1:8000", mux)
	// Output: video send-receive
}

// The seed's second example: the same handler also emits an additional output (a count),
// which clients read from GET /outputs?webrtc_id=ID as Server-Sent Events.
func Example_additionalOutputs() {
	detection := func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		threshold := s.Inputs().Float("conf_threshold")
		n := 0
		for _, y := range f.Image.Y {
			if float64(y) > threshold*255 {
				n++
			}
		}
		if err := s.Emit(n); err != nil {
			return nil, err
		}
		return f.FlipVertical(), nil
	}
	stream, err := fastrtc.New(fastrtc.VideoFunc(detection), fastrtc.Video, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Slider("conf_threshold", 0, 1, 0.01, 0.3)),
		fastrtc.WithOutputs(fastrtc.Output{Name: "count"}))
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	mux := http.NewServeMux()
	stream.Mount(mux)
	fmt.Println("ok")
	// Output: ok
}

// A receive-mode stream: the server generates frames, paced at 30 fps.
func ExampleVideoSource() {
	gray := image.NewGray(image.Rect(0, 0, 320, 240))
	src := func(s *fastrtc.Session) iter.Seq2[image.Image, error] {
		return func(yield func(image.Image, error) bool) {
			for i := 0; ; i++ {
				for p := range gray.Pix {
					gray.Pix[p] = uint8(i)
				}
				if !yield(gray, nil) {
					return
				}
			}
		}
	}
	stream, err := fastrtc.New(fastrtc.VideoSource(src), fastrtc.Video, fastrtc.Receive, fastrtc.WithFPS(30))
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	fmt.Println(stream.Mode())
	// Output: receive
}

// An audio echo: every frame from the microphone goes straight back, paced in real time.
func ExampleAudioFunc() {
	echo := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) {
		return in, nil
	})
	stream, err := fastrtc.New(echo, fastrtc.Audio, fastrtc.SendReceive)
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	fmt.Println(stream.Modality())
	// Output: audio
}

// A server that connects through NATs and firewalls: one UDP port for every session, ICE
// over TCP, the public address of a 1:1-NATed VM, and an embedded TURN server whose fresh
// credentials clients get from GET /webrtc/config.
func ExampleWithTURN() {
	echo := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil })
	stream, err := fastrtc.New(echo, fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithUDPPort(3479),
		fastrtc.WithICETCP(":3479"),
		fastrtc.WithPublicIPs("203.0.113.7"),
		fastrtc.WithTURN(fastrtc.TURNOptions{Addr: "0.0.0.0:3478", PublicIP: "203.0.113.7"}),
		fastrtc.WithTelephone(fastrtc.TelephoneOptions{Disabled: true}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stream.Close()
	_ = http.ListenAndServe(":8000", stream.Handler())
}

// hangUp is an echo handler that ends its session when the client sets the hang_up input.
type hangUp struct{ fastrtc.AudioHandler }

// Start runs a goroutine the session owns (its end waits for it; a panic ends only this
// session): it wakes on every input change and fails the session on hang_up.
func (h hangUp) Start(s *fastrtc.Session) error {
	s.Go(func() {
		changed := s.InputsChanged()
		for {
			select {
			case <-changed:
			case <-s.Context().Done():
				return
			}
			changed = s.InputsChanged() // before reading: no change is missed
			if s.Inputs().Bool("hang_up") {
				s.Fail(fmt.Errorf("the user hung up"))
				return
			}
		}
	})
	return nil
}

// A handler built on the session's public hooks (Session.Go, InputsChanged, Fail), as
// ReplyOnPause is.
func ExampleSession_Go() {
	echo := fastrtc.AudioFunc(func(s *fastrtc.Session, in fastrtc.AudioFrame) (fastrtc.AudioFrame, error) { return in, nil })
	factory := fastrtc.AudioHandlerFactory(func() fastrtc.AudioHandler { return hangUp{echo.NewHandler()} })
	stream, err := fastrtc.New(factory, fastrtc.Audio, fastrtc.SendReceive,
		fastrtc.WithInputs(fastrtc.Checkbox("hang_up", false)))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stream.Close()
	_ = http.ListenAndServe(":8000", stream.Handler())
}
