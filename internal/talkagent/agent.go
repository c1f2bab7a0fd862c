// Package talkagent is the voice agent of examples/talk, shared with cmd/e2eserver (the
// browser suite runs it): it answers each turn with what it heard, "You said: ...".
package talkagent

import (
	"context"
	"iter"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/voice"
)

// TextInput is the name of the stream's text input (the page's text box, FastRTC's textbox).
const TextInput = "textbox"

// Agent transcribes each turn (or takes the typed text, or the words after the wake phrase),
// shows both sides of the conversation and speaks the answer. Safe for concurrent use if its
// engines are.
type Agent struct {
	STT voice.Transcriber
	TTS voice.Synthesizer
}

// Reply is the agent's ReplyFunc.
func (a *Agent) Reply(ctx context.Context, s *fastrtc.Session, utt fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
	return func(yield func(fastrtc.AudioFrame, error) bool) {
		text := voice.ReplyText(ctx)
		if text == "" {
			text = voice.ReplyTranscript(ctx)
		}
		if text == "" && len(utt.Samples) > 0 {
			var err error
			if text, err = a.STT.Transcribe(ctx, utt); err != nil {
				yield(fastrtc.AudioFrame{}, err)
				return
			}
		}
		answer := "Sorry, I did not catch that."
		if text != "" {
			_ = s.Transcript(fastrtc.RoleUser, text)
			answer = "You said: " + text
		}
		_ = s.Transcript(fastrtc.RoleAssistant, answer)
		for f, err := range a.TTS.Synthesize(ctx, answer) {
			if !yield(f, err) || err != nil {
				return
			}
		}
	}
}

// Handler is the agent's turn-taking: pause detection, or, with a wake phrase, stop words;
// typed text is answered either way; partial transcripts when the STT streams. opts are more of ReplyOnPause's (a detector).
func (a *Agent) Handler(wake string, opts ...voice.Option) fastrtc.Handler {
	opts = append([]voice.Option{voice.WithTextInput(TextInput)}, opts...)
	if st, ok := a.STT.(voice.StreamingTranscriber); ok { // the user's words live, as they speak
		opts = append(opts, voice.WithPartialTranscripts(st))
	}
	if wake != "" {
		return voice.NewReplyOnStopWords(a.Reply, a.STT, []string{wake}, opts...)
	}
	return voice.NewReplyOnPause(a.Reply, opts...)
}

// Options are the stream options the agent needs (its title and text input).
func Options(wake string) []fastrtc.Option {
	subtitle := "Speak, then pause (or type): the agent says what it heard."
	if wake != "" {
		subtitle = `Say "` + wake + `", then what you want (or type).`
	}
	// chatbot and state are what FastRTC's chat pages post beside the textbox (a history and
	// a state, any JSON); this agent keeps them but does not need them.
	return []fastrtc.Option{fastrtc.WithTitle("Talk", subtitle), fastrtc.WithInputs(
		fastrtc.Text(TextInput, ""), fastrtc.JSON("chatbot", []any{}), fastrtc.JSON("state", []any{}))}
}
