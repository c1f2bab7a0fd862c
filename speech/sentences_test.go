package speech

import (
	"strings"
	"testing"
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
	if got := sentences("Hello there. How are you? Fine"); len(got) != 3 || got[2] != "Fine" {
		t.Fatalf("sentences %q", got)
	}
}
