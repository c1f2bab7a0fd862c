// Command linkprobe measures the video of a FastRTC flip stream from a Go client
// (package client), as e2e/badlink.mjs does from Chromium: it sends a 640x480 picture at
// 30 fps, reads the flipped frames back, and prints, over a window after a warm-up, the frames
// per second received, the time frozen (gaps over 250 ms between frames), the height, and the
// lag of each frame (the server returns each frame with the RTP timestamp it came with, so
// lag is the time from sending a frame to receiving its reply), plus the client's own
// sender figures (its bandwidth estimate and the size it encodes at). scripts/badlink-go.sh
// runs it through each link profile.
//
//	linkprobe -server http://10.211.1.2:8000 -seconds 20 -warmup 8
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/fastrtc-go/fastrtc/client"
	"github.com/fastrtc-go/fastrtc/internal/yuv"
)

// picture draws frame i: a textured field with a bar that moves (so that frames cost bits).
func picture(img *image.YCbCr, i int) *image.YCbCr {
	if img == nil {
		img = yuv.NewI420(640, 480)
	}
	for y := range 480 {
		row := img.Y[y*img.YStride:]
		for x := range 640 {
			v := byte(60 + (x*3+y*5+i*7)%120)
			if y < 240 {
				v += 60
			}
			if (x+i*8)%640 < 40 {
				v = 235
			}
			row[x] = v
		}
	}
	for j := range img.Cb {
		img.Cb[j], img.Cr[j] = byte(110+j%30), byte(130+(j/320)%30)
	}
	return img
}

type result struct {
	FPS        float64 `json:"fps"`
	FrozenS    float64 `json:"frozenS"`
	Height     int     `json:"height"`
	LagP50Ms   int64   `json:"lagP50"`
	LagP95Ms   int64   `json:"lagP95"`
	Frames     int     `json:"frames"`
	SendWidth  int     `json:"sendWidth"`
	SendHeight int     `json:"sendHeight"`
	SendFPS    int     `json:"sendFps"`
	SendKbps   int     `json:"sendTargetKbps"`
	EstKbps    int     `json:"estimateKbps"`
	SendDrops  uint64  `json:"sendDropped"`
}

func main() {
	server := flag.String("server", "http://127.0.0.1:8000", "the flip stream's base URL")
	seconds := flag.Int("seconds", 20, "measured window")
	warmup := flag.Int("warmup", 8, "seconds before the window")
	flag.Parse()
	if err := run(*server, time.Duration(*warmup)*time.Second, time.Duration(*seconds)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "linkprobe:", err)
		os.Exit(1)
	}
}

func run(server string, warmup, window time.Duration) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	conn, err := client.New(server, &client.Options{SendVideo: true, ReceiveVideo: true, Logger: log})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), warmup+window+30*time.Second)
	defer cancel()
	if err := conn.Connect(ctx); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var mu sync.Mutex
	sent := map[uint32]time.Time{}
	go func() {
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		var img *image.YCbCr
		for i := 0; ctx.Err() == nil; i++ {
			img = picture(img, i)
			ts := uint32(i * 3000)
			mu.Lock()
			sent[ts] = time.Now()
			delete(sent, ts-3000*300) // keep 10 s
			mu.Unlock()
			if conn.SendVideo(ctx, img, ts) != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
	}()
	start := time.Now()
	from, to := start.Add(warmup), start.Add(warmup+window)
	var lags []int64
	var heights []int
	var frozen time.Duration
	last := from
	frames := 0
	rctx, rcancel := context.WithDeadline(ctx, to)
	defer rcancel()
	for {
		f, err := conn.ReadVideo(rctx)
		if err != nil {
			break
		}
		now := time.Now()
		if now.Before(from) {
			continue
		}
		if gap := now.Sub(last); gap > 250*time.Millisecond {
			frozen += gap
		}
		last = now
		frames++
		heights = append(heights, f.Image.Bounds().Dy())
		mu.Lock()
		if t, ok := sent[f.RTPTimestamp]; ok {
			lags = append(lags, now.Sub(t).Milliseconds())
		}
		mu.Unlock()
	}
	if gap := to.Sub(last); gap > 250*time.Millisecond {
		frozen += gap
	}
	slices.Sort(lags)
	slices.Sort(heights)
	pct := func(p float64) int64 {
		if len(lags) == 0 {
			return -1
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	ss := conn.VideoSendStats()
	r := result{FPS: float64(frames) / window.Seconds(), FrozenS: frozen.Seconds(), Frames: frames,
		LagP50Ms: pct(0.5), LagP95Ms: pct(0.95), SendWidth: ss.Width, SendHeight: ss.Height, SendFPS: ss.FPS,
		SendKbps: ss.TargetBps / 1000, EstKbps: ss.EstimateBps / 1000, SendDrops: ss.Dropped}
	if len(heights) > 0 {
		r.Height = heights[len(heights)/2]
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
