package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// forwarder is the latency floor: a plain pion server on FastRTC's offer protocol that sends
// the browser's VP8 RTP straight back, without decoding or re-encoding. Key-frame requests
// from the browser's receiver are passed on to its sender.
type forwarder struct {
	api *webrtc.API
	log *slog.Logger

	mu  sync.Mutex
	pcs map[*webrtc.PeerConnection]bool
}

func newForwarder(log *slog.Logger, loopback bool) (*forwarder, error) {
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{
		{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"},
		{Type: "nack", Parameter: "pli"}, {Type: "transport-cc"},
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb},
		PayloadType:        96,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	if loopback {
		loopbackOnly(&se)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return &forwarder{api: api, log: log, pcs: map[*webrtc.PeerConnection]bool{}}, nil
}

func (f *forwarder) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pcs)
}

func (f *forwarder) close() {
	f.mu.Lock()
	pcs := f.pcs
	f.pcs = map[*webrtc.PeerConnection]bool{}
	f.mu.Unlock()
	for pc := range pcs {
		_ = pc.Close()
	}
}

func (f *forwarder) serveOffer(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	var req struct {
		SDP      string `json:"sdp"`
		Type     string `json:"type"`
		WebRTCID string `json:"webrtc_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Type != "offer" || req.SDP == "" {
		http.Error(w, `{"error":"want {sdp, type: offer, webrtc_id}"}`, http.StatusUnprocessableEntity)
		return
	}
	answer, err := f.answer(r.Context(), req.SDP)
	if err != nil {
		f.log.Warn("offer", "err", err)
		http.Error(w, `{"error":"`+err.Error()+`"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sdp": answer.SDP, "type": "answer"})
}

func (f *forwarder) answer(ctx context.Context, offer string) (*webrtc.SessionDescription, error) {
	pc, err := f.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.pcs[pc] = true
	f.mu.Unlock()
	drop := func() {
		f.mu.Lock()
		delete(f.pcs, pc)
		f.mu.Unlock()
		_ = pc.Close()
	}
	out, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "forward")
	if err != nil {
		drop()
		return nil, err
	}
	sender, err := pc.AddTrack(out)
	if err != nil {
		drop()
		return nil, err
	}
	var ssrcMu sync.Mutex
	var remoteSSRC uint32
	go func() { // key-frame requests from the browser's receiver go to its sender
		buf := make([]byte, 1500)
		for {
			n, _, err := sender.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				switch p.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					ssrcMu.Lock()
					ssrc := remoteSSRC
					ssrcMu.Unlock()
					if ssrc != 0 {
						_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
					}
				}
			}
		}
	}()
	pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		go func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := recv.Read(buf); err != nil {
					return
				}
			}
		}()
		if track.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		ssrcMu.Lock()
		remoteSSRC = uint32(track.SSRC())
		ssrcMu.Unlock()
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(track.SSRC())}})
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				return
			}
			pkt.Header.Extension = false
			pkt.Header.Extensions = nil
			if err := out.WriteRTP(pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				return
			}
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed || s == webrtc.PeerConnectionStateDisconnected {
			drop()
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		drop()
		return nil, err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		drop()
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		drop()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-gathered:
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
	return pc.LocalDescription(), nil
}
