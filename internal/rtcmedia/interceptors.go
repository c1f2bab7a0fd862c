package rtcmedia

import (
	"fmt"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// InterceptorOptions selects the RTP machinery of a peer connection.
type InterceptorOptions struct {
	// Video is set when the connection may carry video: NACK responder (retransmission
	// of what the peer reports lost) and pion's stats. The receive side's NACKs come
	// from NackTracker, which the video reader runs (pion's generator NACKs on a fixed
	// 100 ms tick, which a retransmission cannot beat on a lossy link).
	Video bool
	// BWE is set when the connection sends video: transport-wide sequence numbers on
	// everything sent, and a send-side bandwidth estimate (Google congestion control)
	// from the peer's transport-cc feedback, registered in the returned Estimators.
	BWE bool
	// StartBitrate, MinBitrate and MaxBitrate (bit/s) bound the estimate.
	StartBitrate, MinBitrate, MaxBitrate int
	// Logger is pion's logger factory (nil: pion's default).
	Logger logging.LoggerFactory
}

// responderSize is how many sent video packets the NACK responder keeps: about 1.5 s at
// 1.5 Mbit/s, beyond any round trip a retransmission can still help.
const responderSize = 256

// Estimators hands each new peer connection's bandwidth estimator to the code that made
// it: the interceptor registers it under the connection's ID while NewPeerConnection
// runs, and Take fetches it. Safe for concurrent use.
type Estimators struct {
	mu sync.Mutex
	m  map[string]cc.BandwidthEstimator
}

// Take returns and forgets the estimator of the peer connection with the given ID
// (PeerConnection.ID), or nil.
func (e *Estimators) Take(id string) cc.BandwidthEstimator {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	est := e.m[id]
	delete(e.m, id)
	return est
}

// Interceptors registers on ir (and the header extensions on me) what o asks for, always
// with RTCP reports and transport-cc feedback to the peer (so that its own congestion
// control sees what arrives). With o.BWE it returns the Estimators of new connections.
func Interceptors(me *webrtc.MediaEngine, ir *interceptor.Registry, o InterceptorOptions) (*Estimators, error) {
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	// Feedback every 50 ms for video (libwebrtc's pace at these rates): the peer's
	// estimator sees a filling queue a round sooner than with pion's 100 ms. Audio-only
	// connections keep 100 ms (one timer less per idle session matters there).
	twccInterval := 100 * time.Millisecond
	if o.Video {
		twccInterval = 50 * time.Millisecond
	}
	if err := webrtc.ConfigureTWCCSenderWithOptions(me, ir, twcc.SendInterval(twccInterval)); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if o.Video {
		opts := []nack.ResponderOption{nack.ResponderSize(responderSize)}
		if o.Logger != nil {
			opts = append(opts, nack.ResponderLog(o.Logger.NewLogger("nack")))
		}
		resp, err := nack.NewResponderInterceptor(opts...)
		if err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
		ir.Add(resp)
		if err := webrtc.ConfigureStatsInterceptor(ir); err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
	}
	if !o.BWE {
		return nil, nil
	}
	bweOpts := []gcc.Option{
		gcc.SendSideBWEInitialBitrate(o.StartBitrate),
		gcc.SendSideBWEMinBitrate(o.MinBitrate),
		gcc.SendSideBWEMaxBitrate(o.MaxBitrate),
	}
	if o.Logger != nil {
		bweOpts = append(bweOpts, gcc.WithLoggerFactory(o.Logger))
	}
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		// The sender paces itself (package vsend): the estimator's own pacer would queue
		// without bound behind a 5 ms ticker. A no-op pacer of its own per estimator: one
		// shared by all kept every ended connection's stream writer in its map (180 KB of
		// peer connection per video session, never freed).
		return gcc.NewSendSideBWE(append(bweOpts[:len(bweOpts):len(bweOpts)], gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))...)
	})
	if err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	ests := &Estimators{m: map[string]cc.BandwidthEstimator{}}
	f.OnNewPeerConnection(func(id string, est cc.BandwidthEstimator) {
		ests.mu.Lock()
		ests.m[id] = est
		ests.mu.Unlock()
	})
	ir.Add(f)
	// After the estimator: outgoing packets pass the interceptors last-added first, and
	// the estimator reads the sequence number this one writes.
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, ir); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	return ests, nil
}
