package fastrtc

// Transcript roles for Session.Transcript.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Transcript shows the client a line of the conversation: role is RoleUser (what the user
// said or typed) or RoleAssistant (the reply). It is sent as the control message
// {"type": "transcript", "data": {"role": role, "text": text}} (the built-in page shows it)
// and emitted as the additional output {"transcript": {"role": role, "text": text}}, so a page
// that reads /outputs sees it too; with WithChatOutputs, the output is FastRTC's chat
// message instead: {"message": {"role": role, "content": text}}.
func (s *Session) Transcript(role, text string) error {
	line := map[string]string{"role": role, "text": text}
	if err := s.Send(MessageTranscript, line); err != nil {
		return err
	}
	if s.stream.cfg.chatOutputs {
		return s.Emit(map[string]any{"message": map[string]string{"role": role, "content": text}})
	}
	return s.Emit(map[string]any{"transcript": line})
}

// PartialTranscript shows the client a line of the conversation while it is spoken: text is
// the transcript so far (it replaces the previous partial of role), final says the speaker
// finished (the line's Transcript may follow; "" clears the partial). It is sent as the
// control message {"type": "transcript_partial", "data": {"role", "text", "final"}}, not as an
// output; the built-in page shows it, in grey, until the line's transcript arrives.
func (s *Session) PartialTranscript(role, text string, final bool) error {
	return s.Send(MessageTranscriptPartial, map[string]any{"role": role, "text": text, "final": final})
}
