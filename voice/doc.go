// Package voice builds voice agents on a fastrtc audio stream: FastRTC's ReplyOnPause (turn
// taking by pause detection, with interruptions) and ReplyOnStopWords (answering only when
// addressed), the voice activity detectors they use (the Silero VAD v5 in pure Go, the
// classic WebRTC VAD), and the interfaces of the engines an agent talks through
// (Transcriber, Synthesizer, PhraseSpotter; package speech has local ones).
//
//	reply := func(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
//		return func(yield func(fastrtc.AudioFrame, error) bool) { yield(utt, nil) } // parrot
//	}
//	m, err := voice.LoadSileroModelFile(path)
//	...
//	stream, err := fastrtc.New(voice.NewReplyOnPause(reply, voice.WithSilero(m, voice.SileroOptions{})),
//		fastrtc.Audio, fastrtc.SendReceive)
//
// The package is built only on what package fastrtc exports (the Session's hooks, the
// AudioAgent handler, InputReceiver, TextReceiver, ReplyTrigger): a handler of your own can
// do everything ReplyOnPause does. A program that does not import it does not link the
// detectors' C library (libwebrtc-audio-processing).
//
// Nothing here reads the environment: the examples read FASTRTC_SILERO_MODEL themselves and
// pass WithSilero.
package voice
