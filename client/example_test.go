package client_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"net/http/httptest"
	"time"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/client"
)

// A video round trip through a FastRTC server whose handler flips frames.
func ExampleDial() {
	stream, _ := fastrtc.New(fastrtc.VideoFunc(func(s *fastrtc.Session, f *fastrtc.VideoFrame) (image.Image, error) {
		return f.FlipVertical(), nil
	}), fastrtc.Video, fastrtc.SendReceive, fastrtc.WithSettingEngine(loopback))
	srv := httptest.NewServer(stream.Handler())
	defer stream.Close()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL, &client.Options{SendVideo: true, ReceiveVideo: true, SettingEngine: loopback})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			if c.SendVideo(ctx, pattern(i), uint32(i*3000)) != nil {
				return
			}
			time.Sleep(time.Second / 30)
		}
	}()
	f, err := c.ReadVideo(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	w, h := f.Size()
	fmt.Println(w, h)
	// Output: 320 240
}

// A refusal is a typed error.
func ExampleRefusedError() {
	err := error(&client.RefusedError{Code: client.CodeConcurrencyLimit, Meta: map[string]any{"error": client.CodeConcurrencyLimit, "limit": 1.0}})
	var re *client.RefusedError
	fmt.Println(errors.Is(err, client.ErrConcurrencyLimit), errors.As(err, &re) && re.Meta["limit"] == 1.0)
	fmt.Println(err)
	// Output:
	// true true
	// client: refused by the server: concurrency_limit_reached (limit 1)
}
