package speech

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestSentencesBounded: a long text without punctuation is cut into pieces of at most
// maxPiece bytes, at spaces, losing no word; sentences stay whole.
func TestSentencesBounded(t *testing.T) {
	long := strings.Repeat("lorem ipsum dolor ", 5000) // 90 KB, no punctuation
	got := sentences(long)
	if len(got) < len(long)/maxPiece {
		t.Fatalf("%d pieces for %d bytes", len(got), len(long))
	}
	for _, p := range got {
		if len(p) > maxPiece || strings.HasPrefix(p, " ") || strings.HasSuffix(p, " ") {
			t.Fatalf("piece of %d bytes: %q", len(p), p[:min(len(p), 40)])
		}
	}
	if strings.Join(got, " ") != strings.TrimSpace(long) {
		t.Fatal("words lost or changed")
	}
	// A piece without spaces is cut at a rune boundary.
	for _, p := range sentences(strings.Repeat("é", 400)) {
		if !utf8.ValidString(p) || len(p) > maxPiece {
			t.Fatalf("piece %q", p)
		}
	}
	// Invalid UTF-8 without spaces (a client's data-channel text) ends, in valid pieces.
	done := make(chan []string, 1)
	go func() { done <- sentences("You said: " + strings.Repeat("\x80", 400)) }()
	select {
	case got := <-done:
		for _, p := range got {
			if !utf8.ValidString(p) || len(p) > maxPiece {
				t.Fatalf("piece of %d bytes, valid %v", len(p), utf8.ValidString(p))
			}
		}
	case <-time.After(2 * time.Second):
		t.Fatal("sentences did not return on invalid UTF-8")
	}
	if got := sentences("Hello there. How are you? Fine"); len(got) != 3 || got[2] != "Fine" {
		t.Fatalf("sentences %q", got)
	}
}
