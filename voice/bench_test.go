package voice

// BenchmarkIdleReplyOnPauseSessions holds 50 connected ReplyOnPause sessions (real pion
// peers on loopback, both ends in this process) with no audio flowing, and reports the
// process's CPU use while they idle.
func BenchmarkIdleReplyOnPauseSessions(b *testing.B) {
	const n = 50
	rec := &replyRecorder{replyLen: time.Second}
	s, err := New(NewReplyOnPause(rec.reply), Audio, SendReceive, WithSettingEngine(loopbackOnly))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptestServer(b, s.Handler())
	clients := make([]*testClient, n)
	for i := range clients {
		clients[i] = newTestClient(b, srv, clientOpts{sendAudio: true, recvAudio: true})
		clients[i].connect()
	}
	time.Sleep(time.Second) // settle
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
	for _, c := range clients {
		_ = c.pc.Close()
	}
	_ = s.Close()
}
