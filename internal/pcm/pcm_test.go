package pcm

import (
	"slices"
	"testing"
)

func TestAppendChannels(t *testing.T) {
	for _, tc := range []struct {
		src      []int16
		from, to int
		want     []int16
	}{
		{[]int16{1, 2}, 1, 1, []int16{1, 2}},
		{[]int16{1, -3}, 1, 2, []int16{1, 1, -3, -3}},
		{[]int16{2, 4, -32768, -32768}, 2, 1, []int16{3, -32768}},
	} {
		if got := AppendChannels([]int16{9}, tc.src, tc.from, tc.to); !slices.Equal(got, append([]int16{9}, tc.want...)) {
			t.Errorf("AppendChannels(%v, %d->%d) = %v, want 9 then %v", tc.src, tc.from, tc.to, got, tc.want)
		}
	}
}
