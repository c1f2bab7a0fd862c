// Package pcm holds small conversions of interleaved 16-bit PCM shared by the server and
// the Go client.
package pcm

// AppendChannels appends src, interleaved with from channels, to dst with to channels (1 or
// 2): mono is duplicated to stereo, stereo is averaged to mono, equal counts are copied.
func AppendChannels(dst, src []int16, from, to int) []int16 {
	switch {
	case from == to:
		return append(dst, src...)
	case from == 2 && to == 1:
		for i := 0; i+1 < len(src); i += 2 {
			dst = append(dst, int16((int32(src[i])+int32(src[i+1]))/2))
		}
	default: // 1 -> 2
		for _, v := range src {
			dst = append(dst, v, v)
		}
	}
	return dst
}
