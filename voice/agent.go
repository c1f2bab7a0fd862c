package voice

import (
	"context"
	"fmt"
	"github.com/fastrtc-go/fastrtc"
	"iter"
	"strings"
	"sync/atomic"
	"unicode"
)

// Transcriber turns speech into text (speech-to-text): a local engine (package speech has
// PocketSphinx) or a cloud service in a few lines (upload audio.WAV() to its HTTP API). audio
// is mono or stereo at any rate; implementations resample as they need. Transcribe should
// return promptly once ctx is done. Implementations document their own concurrency; the ones
// this module ships are safe for concurrent use.
type Transcriber interface {
	Transcribe(ctx context.Context, audio fastrtc.AudioFrame) (string, error)
}

// StreamingTranscriber transcribes speech while it is spoken: partial results as the audio
// comes, the final one at the end of the utterance (package speech's PocketSphinx is one).
// ReplyOnPause with WithPartialTranscripts shows the partials live.
type StreamingTranscriber interface {
	// StartTranscription begins one utterance of mono audio at rate Hz; it may wait (for a
	// free decoder, say) until ctx is done.
	StartTranscription(ctx context.Context, rate int) (TranscriptionStream, error)
}

// TranscriptionStream is one utterance being transcribed: Write adds audio and returns the
// best transcript so far; Close ends the utterance, returns the final transcript and frees
// the stream. One goroutine uses a stream. (An alias of the interface literal, so that an
// engine can implement StreamingTranscriber without importing this package.)
type TranscriptionStream = interface {
	Write(samples []int16) (string, error)
	Close() (string, error)
}

// Synthesizer turns text into speech (text-to-speech), streaming audio frames at any rate as
// they are made (package speech has espeak-ng; a cloud service's PCM response body becomes
// frames with media.ReadPCMFrames). Ranging may stop early (an interruption); ctx cancels
// the synthesis.
type Synthesizer interface {
	Synthesize(ctx context.Context, text string) iter.Seq2[fastrtc.AudioFrame, error]
}

// PhraseSpotter is implemented by Transcribers that can listen for a given phrase more
// reliably than by transcribing and searching (PocketSphinx's keyword spotting). A
// ReplyOnStopWords whose transcriber implements it hears its stop words either way.
type PhraseSpotter interface {
	SpotPhrase(ctx context.Context, audio fastrtc.AudioFrame, phrase string) (bool, error)
}

// replyTextKey carries the text a reply answers (ReplyText).
type replyTextKey struct{}

// ReplyText returns the text that triggered the reply whose context ctx is: the value of
// ReplyOnPause's text input (WithTextInput), posted to /input_hook or sent on the data
// channel. It returns "" for a reply to speech (the utterance has the audio then).
func ReplyText(ctx context.Context) string {
	t, _ := ctx.Value(replyTextKey{}).(string)
	return t
}

// NewReplyOnStopWords returns a voice agent that answers only when addressed (FastRTC's
// ReplyOnStopWords): it detects turns as ReplyOnPause does, transcribes each with t, and
// stays quiet until a turn contains one of the stop words (a wake phrase such as "hello
// computer"; matched case- and punctuation-insensitively, as whole words). Then it sends the
// client the control message {"type": "stopword", "data": ""} and replies, with reply, to
// that turn if more was said after the phrase, else to the next turn; after a reply it waits
// for the phrase again. The reply's utterance is the turn's audio; ReplyTranscript(ctx) has
// its text. opts are ReplyOnPause's. It panics if reply or t is nil or no stop word is given
// (programming errors).
func NewReplyOnStopWords(reply ReplyFunc, t Transcriber, stopWords []string, opts ...Option) *ReplyOnPause {
	if reply == nil || t == nil || len(stopWords) == 0 {
		panic("voice: NewReplyOnStopWords: nil reply or transcriber, or no stop words")
	}
	var phrases [][]string
	for _, w := range stopWords {
		if ws := words(w); len(ws) > 0 {
			phrases = append(phrases, ws)
		}
	}
	if len(phrases) == 0 {
		panic("voice: NewReplyOnStopWords: stop words have no words")
	}
	r := NewReplyOnPause(reply, opts...)
	r.cfg.gate = &stopWordGate{t: t, phrases: phrases}
	return r
}

// replyTranscriptKey carries the transcript of the turn a stop-word reply answers.
type replyTranscriptKey struct{}

// ReplyTranscript returns the transcript of the turn a ReplyOnStopWords reply answers (the
// words after the stop phrase if the phrase was in the same turn), or "".
func ReplyTranscript(ctx context.Context) string {
	t, _ := ctx.Value(replyTranscriptKey{}).(string)
	return t
}

// stopWordGate decides, per turn, whether ReplyOnStopWords replies. Its state is per session
// (armed lives in the pauseHandler); the gate itself is immutable.
type stopWordGate struct {
	t       Transcriber
	phrases [][]string
}

// admit transcribes the turn and returns the context the reply runs with, or ok false to
// stay quiet. armed is the session's state: a stop word was heard and the reply is pending.
func (g *stopWordGate) admit(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame, armed *atomic.Bool) (context.Context, bool, error) {
	text, err := g.t.Transcribe(ctx, utt)
	if err != nil {
		return ctx, false, fmt.Errorf("voice: stop words: transcribe: %w", err)
	}
	s.Logger().Debug("stop words: turn transcribed", "text", text, "armed", armed.Load())
	if ctx.Err() != nil {
		// The user spoke again before this turn's reply began: the turn is not answered, but
		// the session stays armed, or becomes so if the turn held the phrase.
		for _, p := range g.phrases {
			if _, found := afterPhrase(words(text), p); found {
				armed.Store(true)
			}
		}
		return ctx, false, nil
	}
	if armed.Load() {
		armed.Store(false)
		return context.WithValue(ctx, replyTranscriptKey{}, text), true, nil
	}
	ws := words(text)
	for _, p := range g.phrases {
		rest, found := afterPhrase(ws, p)
		if !found {
			sp, ok := g.t.(PhraseSpotter)
			if !ok {
				continue
			}
			spotted, err := sp.SpotPhrase(ctx, utt, strings.Join(p, " "))
			if err != nil {
				return ctx, false, fmt.Errorf("voice: stop words: spot: %w", err)
			}
			if !spotted {
				continue
			}
			// Spotted, but the transcript misheard it: the request is what follows as many
			// words as the phrase has.
			rest = ws[min(len(p), len(ws)):]
		}
		_ = s.Send(fastrtc.MessageStopword, "")
		s.Logger().Debug("stop words: heard", "phrase", strings.Join(p, " "), "rest", strings.Join(rest, " "))
		if len(rest) == 0 {
			armed.Store(true) // the request comes in the next turn
			return ctx, false, nil
		}
		return context.WithValue(ctx, replyTranscriptKey{}, strings.Join(rest, " ")), true, nil
	}
	return ctx, false, nil
}

// afterPhrase finds phrase in ws and returns the words after it.
func afterPhrase(ws, phrase []string) ([]string, bool) {
	for i := 0; i+len(phrase) <= len(ws); i++ {
		if equalWords(ws[i:i+len(phrase)], phrase) {
			return ws[i+len(phrase):], true
		}
	}
	return nil, false
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// words lowercases s and splits it into words, dropping punctuation.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}
