package voice

import (
	"syscall"
	"testing"
	"time"

	"github.com/fastrtc-go/fastrtc"
)

// BenchmarkIdleReplyOnPauseSessions holds 50 connected ReplyOnPause sessions (real pion
// peers on loopback, both ends in this process) with no audio flowing, and reports the
// process's CPU use while they idle.
func BenchmarkIdleReplyOnPauseSessions(b *testing.B) {
	const n = 50
	rec := &replyRecorder{replyLen: time.Second}
	s, srv := newTestStream(b, NewReplyOnPause(rec.reply), fastrtc.Audio, fastrtc.SendReceive)
	clients := make([]*testClient, n)
	for i := range clients {
		clients[i] = newTestClient(b, srv.URL, clientOpts{sendAudio: true, recvAudio: true})
		clients[i].connect()
	}
	waitSessions(b, s, n)
	time.Sleep(time.Second) // settle: the connections' start-up work is not idling
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		time.Sleep(200 * time.Millisecond)
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	wall := time.Since(start)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) +
		syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu(50sessions)")
	// The clients, then the stream, are closed by the cleanups (which check that nothing is
	// left).
}
