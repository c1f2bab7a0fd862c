// Package speech has local speech engines for voice agents, behind fastrtc's Transcriber and
// Synthesizer interfaces: text to speech with espeak-ng and speech to text with PocketSphinx
// (Debian's libespeak-ng and libpocketsphinx with its English model, via cgo, in process).
// They run offline; for better voices or accuracy, put a cloud service behind the same
// interfaces (the package example shows an OpenAI transcriber in a few lines).
//
// # Concurrency
//
// Espeak and PocketSphinx are safe for concurrent use. espeak-ng keeps process-wide state, so
// syntheses run one at a time in a process (each is fast: see the README's figures); the
// audio is then streamed outside that lock. PocketSphinx keeps a pool of decoders (each
// ~0.3 s to load, tens of MB): Transcribe takes a free one or waits for one.
package speech

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/fastrtc-go/fastrtc/internal/espeak"
	"github.com/fastrtc-go/fastrtc/internal/pcm"
	"github.com/fastrtc-go/fastrtc/internal/resample"
	"github.com/fastrtc-go/fastrtc/internal/sphinx"
	"github.com/fastrtc-go/fastrtc/media"
)

// ErrClosed is returned by engines used after Close.
var ErrClosed = errors.New("speech: closed")

// EspeakOptions configure the espeak-ng synthesizer. The zero value is American English at
// 175 words per minute.
type EspeakOptions struct {
	Voice          string // an espeak-ng voice, e.g. "en-us", "en-gb", "en-us+f3" (default "en-us")
	WordsPerMinute int    // default 175
}

// Espeak is a Synthesizer on espeak-ng. Safe for concurrent use.
type Espeak struct {
	e *espeak.Engine
}

// NewEspeak loads espeak-ng with the options.
func NewEspeak(o EspeakOptions) (*Espeak, error) {
	e, err := espeak.New(espeak.Options{Voice: o.Voice, WordsPerMinute: o.WordsPerMinute})
	if err != nil {
		return nil, fmt.Errorf("speech: espeak-ng: %w", err)
	}
	return &Espeak{e: e}, nil
}

// SampleRate is the rate of the audio Synthesize yields (22050 Hz).
func (s *Espeak) SampleRate() int { return s.e.SampleRate() }

// Synthesize speaks text: sentence by sentence, each synthesized whole and then yielded as 20
// ms mono frames, so the first audio comes after the first sentence. Stopping the range or
// cancelling ctx stops it.
func (s *Espeak) Synthesize(ctx context.Context, text string) iter.Seq2[media.AudioFrame, error] {
	return func(yield func(media.AudioFrame, error) bool) {
		rate := s.e.SampleRate()
		frame := rate / 50
		for _, sentence := range sentences(text) {
			var buf []int16
			err := s.e.Synthesize(ctx, sentence, func(p []int16) bool { buf = append(buf, p...); return true })
			if err != nil {
				if ctx.Err() == nil {
					yield(media.AudioFrame{}, fmt.Errorf("speech: espeak-ng: %w", err))
				}
				return
			}
			for i := 0; i < len(buf); i += frame {
				if ctx.Err() != nil {
					return
				}
				f := media.AudioFrame{SampleRate: rate, Channels: 1, Samples: buf[i:min(len(buf), i+frame)]}
				if !yield(f, nil) {
					return
				}
			}
		}
	}
}

// Close frees the engine; it is idempotent.
func (s *Espeak) Close() error { return s.e.Close() }

// maxPiece bounds a piece of text synthesized at once (bytes): espeak-ng holds the
// process-wide engine lock and buffers the whole piece, so a long text without punctuation
// (96 KB once took the process from 321 to 985 MB and made another session's reply wait
// 6.5 s) is cut at spaces into pieces of about this size; other sessions' pieces go between.
const maxPiece = 300

// sentences splits text after ., !, ? and ; (keeping them), and pieces longer than
// maxPiece at the last space before it (or at maxPiece), dropping empty pieces.
func sentences(text string) []string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	var out []string
	add := func(p string) {
		for len(p) > maxPiece {
			cut := strings.LastIndexByte(p[:maxPiece], ' ')
			if cut <= 0 {
				cut = maxPiece
				for cut > maxPiece-utf8.UTFMax && !utf8.RuneStart(p[cut]) {
					cut-- // at a rune's start when there is one nearby (invalid UTF-8 has none)
				}
			}
			if q := strings.TrimSpace(p[:cut]); q != "" {
				out = append(out, q)
			}
			p = strings.TrimSpace(p[cut:])
		}
		if strings.IndexFunc(p, unicode.IsLetter) >= 0 || strings.IndexFunc(p, unicode.IsDigit) >= 0 {
			out = append(out, p)
		}
	}
	start := 0
	for i, r := range text {
		if r == '.' || r == '!' || r == '?' || r == ';' || r == '\n' {
			add(strings.TrimSpace(text[start : i+1]))
			start = i + 1
		}
	}
	if p := strings.TrimSpace(text[start:]); p != "" {
		add(p)
	}
	return out
}

// PocketSphinxOptions configure the PocketSphinx transcriber. The zero value uses Debian's
// English model (package pocketsphinx-en-us) with two decoders.
type PocketSphinxOptions struct {
	// Decoders is how many transcriptions may run at once (default 2; each decoder holds the
	// language model).
	Decoders int
	// StreamDecoders is how many streaming transcriptions (StartTranscription: partial
	// transcripts) may run at once (default 1). They have decoders of their own, made on
	// first use: live decoding adapts a decoder's normalization as it goes, and a partial
	// stream must neither hold nor change the decoders of final transcriptions.
	StreamDecoders int
	// HMM, LM and Dict override the model's paths (default: Debian's en-us model).
	HMM, LM, Dict string
	// SpotThreshold is SpotPhrase's keyword-spotting threshold, 1e-200 (hears the phrase
	// more readily, more false alarms) to 1e-5 (default 1e-50, internal/sphinx's: at 1e-30
	// espeak-ng's "hello computer" was missed, at 1e-50 it is heard, with no false alarm
	// on the negatives tested down to 1e-200).
	SpotThreshold float64
}

// PocketSphinx is a Transcriber on PocketSphinx. Safe for concurrent use.
type PocketSphinx struct {
	cfg    sphinx.Config
	spotMu sync.Mutex                 // guards spots; held while spotting (one spotter per phrase)
	spots  map[string]*sphinx.Decoder // keyword-spotting decoders, made on first use per phrase
	pool   chan *sphinx.Decoder
	all    []*sphinx.Decoder
	// The streaming decoders, made on the first StartTranscription.
	streamOnce sync.Once
	streams    chan *sphinx.Decoder
	streamN    int
	streamErr  error
	closed     chan struct{}
	once       sync.Once
	mu         sync.Mutex // guards inUse
	inUse      sync.WaitGroup
}

// NewPocketSphinx loads the model into o.Decoders decoders.
func NewPocketSphinx(o PocketSphinxOptions) (*PocketSphinx, error) {
	cfg, err := sphinx.DefaultConfig()
	if o.HMM != "" || o.LM != "" || o.Dict != "" {
		cfg, err = sphinx.Config{HMM: o.HMM, LM: o.LM, Dict: o.Dict}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("speech: PocketSphinx: %w", err)
	}
	n := o.Decoders
	if n <= 0 {
		n = 2
	}
	if o.SpotThreshold == 0 {
		o.SpotThreshold = sphinx.DefaultKeyphraseThreshold
	}
	cfg.KeyphraseThreshold = o.SpotThreshold
	if o.StreamDecoders <= 0 {
		o.StreamDecoders = 1
	}
	p := &PocketSphinx{cfg: cfg, spots: map[string]*sphinx.Decoder{}, pool: make(chan *sphinx.Decoder, n), closed: make(chan struct{}),
		streamN: o.StreamDecoders}
	for range n {
		d, err := sphinx.New(cfg)
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("speech: PocketSphinx: %w", err)
		}
		p.all = append(p.all, d)
		p.pool <- d
	}
	return p, nil
}

// to16k converts audio to 16 kHz mono.
func to16k(audio media.AudioFrame) ([]int16, error) {
	if audio.Channels < 1 || audio.SampleRate <= 0 {
		return nil, fmt.Errorf("speech: %d Hz, %d channels", audio.SampleRate, audio.Channels)
	}
	mono := audio.Samples
	if audio.Channels != 1 {
		mono = pcm.AppendChannels(nil, audio.Samples, audio.Channels, 1)
	}
	if audio.SampleRate != sphinx.SampleRate {
		r, err := resample.New(audio.SampleRate, sphinx.SampleRate, 1)
		if err != nil {
			return nil, fmt.Errorf("speech: %w", err)
		}
		mono = append(r.Process(nil, mono), r.Flush(nil)...)
	}
	return mono, nil
}

// SpotPhrase reports whether phrase was said in audio, with PocketSphinx's keyword spotting
// (voice.PhraseSpotter): more reliable for a wake phrase than transcribing and searching.
// Each phrase gets its own decoder on first use; spotting one phrase runs one call at a time.
func (p *PocketSphinx) SpotPhrase(ctx context.Context, audio media.AudioFrame, phrase string) (bool, error) {
	mono, err := to16k(audio)
	if err != nil {
		return false, err
	}
	p.spotMu.Lock()
	defer p.spotMu.Unlock()
	select {
	case <-p.closed:
		return false, ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	d := p.spots[phrase]
	if d == nil {
		c := p.cfg
		c.Keyphrase = phrase // KeyphraseThreshold is SpotThreshold
		if d, err = sphinx.New(c); err != nil {
			return false, fmt.Errorf("speech: keyword spotting %q: %w", phrase, err)
		}
		p.spots[phrase] = d
	}
	hyp, err := d.Transcribe(mono)
	if err != nil {
		return false, fmt.Errorf("speech: keyword spotting: %w", err)
	}
	return strings.Contains(hyp, strings.ToLower(phrase)), nil
}

// Transcribe returns what was said in audio (any rate, mono or stereo): lower-case words, or
// "" for no speech. It waits for a free decoder (or ctx).
func (p *PocketSphinx) Transcribe(ctx context.Context, audio media.AudioFrame) (string, error) {
	mono, err := to16k(audio)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return "", ErrClosed
	default:
	}
	p.inUse.Add(1)
	p.mu.Unlock()
	defer p.inUse.Done()
	var d *sphinx.Decoder
	select {
	case d = <-p.pool:
	case <-ctx.Done():
		return "", ctx.Err()
	case <-p.closed:
		return "", ErrClosed
	}
	defer func() { p.pool <- d }()
	text, err := d.Transcribe(mono)
	if err != nil {
		return "", fmt.Errorf("speech: transcribe: %w", err)
	}
	return text, nil
}

// StartTranscription begins transcribing one utterance while it is spoken
// (voice.StreamingTranscriber): Write feeds audio at rate Hz (mono) and returns the best
// hypothesis so far, Close returns the final transcript. The stream holds one of the
// streaming decoders (StreamDecoders; not those of Transcribe) until Close; it waits for a
// free one (or ctx).
//
// The result is voice.TranscriptionStream, written out so that this package does not import
// package voice.
func (p *PocketSphinx) StartTranscription(ctx context.Context, rate int) (interface {
	Write(samples []int16) (string, error)
	Close() (string, error)
}, error) {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	p.inUse.Add(1)
	p.streamOnce.Do(func() {
		p.streams = make(chan *sphinx.Decoder, p.streamN)
		for range p.streamN {
			d, err := sphinx.New(p.cfg)
			if err != nil {
				p.streamErr = fmt.Errorf("speech: PocketSphinx: %w", err)
				return
			}
			p.all = append(p.all, d) // under mu: Close reads all after taking it
			p.streams <- d
		}
	})
	p.mu.Unlock()
	if p.streamErr != nil {
		p.inUse.Done()
		return nil, p.streamErr
	}
	var d *sphinx.Decoder
	select {
	case d = <-p.streams: // a free decoder first, even if making it outlasted ctx
	default:
	}
	if d == nil {
		select {
		case d = <-p.streams:
		case <-ctx.Done():
			p.inUse.Done()
			return nil, ctx.Err()
		case <-p.closed:
			p.inUse.Done()
			return nil, ErrClosed
		}
	}
	st := &sphinxStream{p: p, d: d}
	if rate != sphinx.SampleRate {
		r, err := resample.New(rate, sphinx.SampleRate, 1)
		if err != nil {
			st.release()
			return nil, fmt.Errorf("speech: %w", err)
		}
		st.res = r
	}
	if err := d.Start(); err != nil {
		st.release()
		return nil, fmt.Errorf("speech: start utterance: %w", err)
	}
	return st, nil
}

// sphinxStream is one utterance on a decoder of the pool. Not safe for concurrent use (one
// goroutine writes, then closes).
type sphinxStream struct {
	p    *PocketSphinx
	d    *sphinx.Decoder
	res  *resample.Resampler
	buf  []int16
	done bool
}

func (st *sphinxStream) release() {
	st.p.streams <- st.d
	st.p.inUse.Done()
}

// Write adds mono audio and returns the hypothesis so far (lower-case words).
func (st *sphinxStream) Write(samples []int16) (string, error) {
	if st.done {
		return "", ErrClosed
	}
	in := samples
	if st.res != nil {
		st.buf = st.res.Process(st.buf[:0], samples)
		in = st.buf
	}
	if len(in) > 0 {
		if err := st.d.Process(in); err != nil {
			return "", fmt.Errorf("speech: transcribe: %w", err)
		}
	}
	return st.d.Partial(), nil
}

// Close ends the utterance and returns the final transcript; the decoder goes back to the
// pool. Later calls return "" and ErrClosed.
func (st *sphinxStream) Close() (string, error) {
	if st.done {
		return "", ErrClosed
	}
	st.done = true
	defer st.release()
	if st.res != nil {
		if rest := st.res.Flush(st.buf[:0]); len(rest) > 0 {
			_ = st.d.Process(rest)
		}
	}
	text, err := st.d.End()
	if err != nil {
		return "", fmt.Errorf("speech: transcribe: %w", err)
	}
	return text, nil
}

// Close frees the decoders once the transcriptions in progress returned; it is idempotent.
func (p *PocketSphinx) Close() error {
	p.once.Do(func() {
		p.mu.Lock()
		close(p.closed)
		p.mu.Unlock()
		p.inUse.Wait()
		for _, d := range p.all {
			_ = d.Close()
		}
		p.spotMu.Lock()
		for _, d := range p.spots {
			_ = d.Close()
		}
		p.spots = nil
		p.spotMu.Unlock()
	})
	return nil
}
