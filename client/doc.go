// Package client is a Go client for FastRTC servers: this module's server and Python
// FastRTC's alike. It connects the way FastRTC's browser frontend does, so a Go program
// (a test, a load generator, a bot) can stream audio and video to a server's handler and
// get the results back.
//
// Dial makes a WebRTC connection: it POSTs an SDP offer to {base}/webrtc/offer (waiting
// for ICE gathering, or trickling candidates with Options.Trickle), opens the "text" data
// channel and waits until connected. The server's refusal, {"status":"failed",...}, is a
// *RefusedError (errors.Is(err, ErrConcurrencyLimit) when the server is full). On a Conn:
//
//   - SendVideo encodes images as VP8 (WriteVP8 and WriteVideoRTP send pre-encoded frames
//     or raw packets); ReadVideo decodes the server's VP8 into a media.VideoFrame.
//   - SendAudio resamples PCM to 48 kHz and sends it as Opus in 20 ms packets; ReadAudio
//     decodes the server's Opus to 48 kHz PCM.
//   - Message returns data-channel messages; SendMessage sends one.
//   - SetInput posts additional inputs to /input_hook; Outputs reads /outputs (SSE).
//
// DialWebSocket opens an audio-only session on {base}/websocket/offer (mu-law, or 16-bit
// PCM with a declared format), with the same audio, message, input and output methods.
//
// Every blocking call takes a context. Errors start with "client: " and wrap their cause.
// The package has no global state; each connection owns its pion API, codecs and
// goroutines, and Close releases them all.
//
// Example:
//
//	c, err := client.Dial(ctx, "http://127.0.0.1:8000", &client.Options{SendVideo: true, ReceiveVideo: true})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	go func() {
//		for i := 0; ctx.Err() == nil; i++ {
//			_ = c.SendVideo(ctx, frame(i), uint32(i*3000)) // 30 fps: 3000 ticks of 90 kHz
//			time.Sleep(time.Second / 30)
//		}
//	}()
//	for {
//		f, err := c.ReadVideo(ctx)
//		if err != nil {
//			return err
//		}
//		use(f.Image) // valid until the next ReadVideo
//	}
package client
