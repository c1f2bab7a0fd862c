package speech_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"mime/multipart"
	"net/http"

	"github.com/fastrtc-go/fastrtc"
	"github.com/fastrtc-go/fastrtc/voice"
)

// OpenAI is a voice.Transcriber on OpenAI's transcription API (POST
// https://api.openai.com/v1/audio/transcriptions, multipart: file, model; the answer is
// {"text": "..."}): the utterance goes up as a WAV file. Any cloud speech-to-text service
// fits the same way; a text-to-speech service's PCM response becomes frames with
// media.ReadPCMFrames.
type OpenAI struct {
	Key   string
	Model string // e.g. "gpt-4o-mini-transcribe"
}

// Transcribe uploads the audio and returns the service's text.
func (o OpenAI) Transcribe(ctx context.Context, audio fastrtc.AudioFrame) (string, error) {
	wav, err := audio.WAV()
	if err != nil {
		return "", err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("model", o.Model)
	fw, _ := mw.CreateFormFile("file", "speech.wav")
	_, _ = fw.Write(wav)
	_ = mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://api.openai.com/v1/audio/transcriptions", &body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+o.Key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("openai: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("openai: HTTP %d", res.StatusCode)
	}
	var out struct{ Text string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("openai: %w", err)
	}
	return out.Text, nil
}

// A cloud transcriber in place of PocketSphinx (not run: the service is not reachable here).
func Example_cloudTranscriber() {
	var stt voice.Transcriber = OpenAI{Key: "sk-...", Model: "gpt-4o-mini-transcribe"}
	_ = voice.NewReplyOnStopWords(func(ctx context.Context, s *fastrtc.Session, u fastrtc.AudioFrame) iter.Seq2[fastrtc.AudioFrame, error] {
		return func(func(fastrtc.AudioFrame, error) bool) {}
	}, stt, []string{"hello computer"})
}
