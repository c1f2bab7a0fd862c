// Package silero runs the Silero VAD v5 voice activity detector in pure Go:
// it reads the network's weights from the model's ONNX file and evaluates
// the network itself, with no ONNX runtime and no cgo.
//
// The network, per window of 512 samples at 16 kHz (256 at 8 kHz), with the
// last 64 (32) samples of the previous window prepended as context, as
// Silero's own wrappers do:
//
//   - an STFT as a strided convolution with the model's basis (256-point
//     frames, hop 128; 128 and 64 at 8 kHz), reflect-padded on the right,
//     then the magnitude of each bin;
//   - four 1-D convolutions (kernel 3, ReLU; strides 1, 2, 2, 1) down to one
//     128-wide vector;
//   - an LSTM cell (128 units) whose state carries from window to window;
//   - ReLU, a 1x1 convolution and a sigmoid: the speech probability.
//
// Weights live in a Model, read once and shared (immutable, safe for
// concurrent use). A Detector holds one stream's state (LSTM state, context,
// scratch buffers); it is not safe for concurrent use, and Probability does
// not allocate.
//
// The model file is MIT-licensed (github.com/snakers4/silero-vad); npm
// packages ship it, e.g. @ricky0123/vad-web (dist/silero_vad_v5.onnx).
package silero

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Errors returned by Load and NewDetector.
var (
	// ErrModel means the file is not a Silero VAD v5 ONNX model.
	ErrModel = errors.New("silero: not a Silero VAD v5 ONNX model")
	// ErrRate is returned for a sample rate other than 8000 or 16000.
	ErrRate = errors.New("silero: sample rate must be 8000 or 16000")
)

// MaxModelBytes bounds the model file Load reads (the v5 model is 2.3 MB).
const MaxModelBytes = 16 << 20

const hidden = 128 // LSTM width

// Model is a loaded Silero VAD: the weights of its 16 kHz and 8 kHz
// networks. It is immutable and safe for concurrent use.
type Model struct {
	n16, n8 *network
}

// network is the weights of one sample rate's network.
type network struct {
	rate    int
	window  int // samples per window
	context int // samples of the previous window prepended
	nfft    int // STFT frame length
	hop     int
	bins    int       // nfft/2 + 1
	basis   []float32 // [2*bins][nfft]: real rows then imaginary rows
	enc     [4]conv
	wIn     []float32 // [4*hidden][hidden], PyTorch gate order i, f, g, o
	wHid    []float32
	bias    []float32 // bias_ih + bias_hh
	decW    []float32 // [hidden]
	decB    float32
}

// conv is a 1-D convolution with padding 1: weights [out][in*k].
type conv struct {
	out, in, k, stride int
	w, b               []float32
}

// Load reads a Silero VAD v5 model from an ONNX file.
func Load(r io.Reader) (*Model, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("silero: read model: %w", err)
	}
	if len(b) > MaxModelBytes {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrModel, MaxModelBytes)
	}
	g, err := readModel(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, err)
	}
	// The top graph compares sr with 16000 and branches: then is 16 kHz.
	var branch *node
	for i := range g.nodes {
		if g.nodes[i].op == "If" {
			branch = &g.nodes[i]
			break
		}
	}
	if branch == nil || branch.attrs["then_branch"] == nil || branch.attrs["else_branch"] == nil ||
		branch.attrs["then_branch"].g == nil || branch.attrs["else_branch"].g == nil {
		return nil, fmt.Errorf("%w: no sample-rate branch", ErrModel)
	}
	m := &Model{}
	if m.n16, err = readNetwork(branch.attrs["then_branch"].g, 16000, 512); err != nil {
		return nil, err
	}
	if m.n8, err = readNetwork(branch.attrs["else_branch"].g, 8000, 256); err != nil {
		return nil, err
	}
	return m, nil
}

// readNetwork finds one branch's weights by their PyTorch names and checks
// their shapes against the architecture this package evaluates.
func readNetwork(g *graph, rate, window int) (*network, error) {
	consts := map[string]*tensor{}
	var stftStride int64
	ops := map[string]int{}
	var walk func(g *graph)
	walk = func(g *graph) {
		for k, t := range g.inits {
			consts[k] = t
		}
		for _, n := range g.nodes {
			ops[n.op]++
			if n.op == "Constant" && len(n.outputs) == 1 && n.attrs["value"] != nil && n.attrs["value"].t != nil {
				consts[n.outputs[0]] = n.attrs["value"].t
			}
			if n.op == "Conv" && len(n.inputs) >= 2 && strings.HasSuffix(n.inputs[1], "stft.forward_basis_buffer") {
				if s := n.attrs["strides"]; s != nil && len(s.ints) == 1 {
					stftStride = s.ints[0]
				}
			}
			for _, a := range n.attrs {
				if a.g != nil {
					walk(a.g)
				}
			}
		}
	}
	walk(g)
	for _, op := range []string{"Pad", "Conv", "Sqrt", "Relu", "LSTM", "Sigmoid"} {
		if ops[op] == 0 {
			return nil, fmt.Errorf("%w: %d Hz branch has no %s", ErrModel, rate, op)
		}
	}
	get := func(name string, dims ...int64) ([]float32, error) {
		var t *tensor
		for k, v := range consts {
			if k == name || strings.HasSuffix(k, "__"+name) {
				t = v
				break
			}
		}
		if t == nil {
			return nil, fmt.Errorf("%w: %d Hz branch has no %s", ErrModel, rate, name)
		}
		ok := len(t.dims) == len(dims) && len(t.f32) == t.size()
		for i := range dims {
			ok = ok && t.dims[i] == dims[i]
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s has shape %v, want %v", ErrModel, name, t.dims, dims)
		}
		return t.f32, nil
	}
	nfft := window / 2
	n := &network{rate: rate, window: window, context: window / 8, nfft: nfft, hop: nfft / 2, bins: nfft/2 + 1}
	if stftStride != int64(n.hop) {
		return nil, fmt.Errorf("%w: %d Hz STFT stride %d, want %d", ErrModel, rate, stftStride, n.hop)
	}
	var err error
	if n.basis, err = get("stft.forward_basis_buffer", int64(2*n.bins), 1, int64(nfft)); err != nil {
		return nil, err
	}
	ins := [4]int{n.bins, 128, 64, 64}
	outs := [4]int{128, 64, 64, 128}
	strides := [4]int{1, 2, 2, 1}
	for i := range n.enc {
		c := conv{out: outs[i], in: ins[i], k: 3, stride: strides[i]}
		if c.w, err = get(fmt.Sprintf("encoder.%d.reparam_conv.weight", i), int64(c.out), int64(c.in), 3); err != nil {
			return nil, err
		}
		if c.b, err = get(fmt.Sprintf("encoder.%d.reparam_conv.bias", i), int64(c.out)); err != nil {
			return nil, err
		}
		n.enc[i] = c
	}
	if n.wIn, err = get("decoder.rnn.weight_ih", 4*hidden, hidden); err != nil {
		return nil, err
	}
	if n.wHid, err = get("decoder.rnn.weight_hh", 4*hidden, hidden); err != nil {
		return nil, err
	}
	bih, err := get("decoder.rnn.bias_ih", 4*hidden)
	if err != nil {
		return nil, err
	}
	bhh, err := get("decoder.rnn.bias_hh", 4*hidden)
	if err != nil {
		return nil, err
	}
	n.bias = make([]float32, 4*hidden)
	for i := range n.bias {
		n.bias[i] = bih[i] + bhh[i]
	}
	if n.decW, err = get("decoder.decoder.2.weight", 1, hidden, 1); err != nil {
		return nil, err
	}
	db, err := get("decoder.decoder.2.bias", 1)
	if err != nil {
		return nil, err
	}
	n.decB = db[0]
	return n, nil
}

// WindowSamples is the window length for a sample rate: 512 at 16 kHz, 256
// at 8 kHz (32 ms), or 0 for another rate.
func WindowSamples(rate int) int {
	switch rate {
	case 16000:
		return 512
	case 8000:
		return 256
	}
	return 0
}

// Detector is one audio stream's Silero VAD state. It is not safe for
// concurrent use; distinct Detectors of one Model are independent.
type Detector struct {
	n    *network
	h, c []float32 // LSTM state
	x    []float32 // context + window + reflect padding
	// scratch
	frames int
	spec   []float32 // [bins][frames]
	act    [4][]float32
	patch  []float32
	gates  []float32
	col    []float32
}

// NewDetector returns a detector for audio at rate (8000 or 16000 Hz).
func (m *Model) NewDetector(rate int) (*Detector, error) {
	var n *network
	switch rate {
	case 16000:
		n = m.n16
	case 8000:
		n = m.n8
	default:
		return nil, fmt.Errorf("%w (got %d)", ErrRate, rate)
	}
	d := &Detector{n: n, h: make([]float32, hidden), c: make([]float32, hidden)}
	total := n.context + n.window + n.hop/2 // right reflect pad of (nfft-hop)/2
	d.x = make([]float32, total)
	d.frames = (total-n.nfft)/n.hop + 1
	d.spec = make([]float32, n.bins*d.frames)
	t := d.frames
	maxPatch := 0
	for i, c := range n.enc {
		t = (t+2-c.k)/c.stride + 1
		d.act[i] = make([]float32, c.out*t)
		maxPatch = max(maxPatch, c.in*c.k)
	}
	if t != 1 {
		return nil, fmt.Errorf("%w: encoder ends with %d steps", ErrModel, t)
	}
	d.patch = make([]float32, maxPatch)
	d.gates = make([]float32, 4*hidden)
	d.col = make([]float32, 2*n.bins)
	return d, nil
}

// Reset forgets the stream: LSTM state and context are zeroed.
func (d *Detector) Reset() {
	clear(d.h)
	clear(d.c)
	clear(d.x)
}

// WindowSamples is the number of samples Probability takes.
func (d *Detector) WindowSamples() int { return d.n.window }

// ProbabilityInt16 is Probability for 16-bit PCM (scaled by 1/32768).
func (d *Detector) ProbabilityInt16(window []int16) (float32, error) {
	n := d.n
	if len(window) != n.window {
		return 0, fmt.Errorf("silero: window of %d samples, want %d", len(window), n.window)
	}
	d.shift()
	dst := d.x[n.context : n.context+n.window]
	for i, s := range window {
		dst[i] = float32(s) / 32768
	}
	return d.run(), nil
}

// Probability returns the speech probability of the next window of the
// stream (WindowSamples samples in [-1, 1]).
func (d *Detector) Probability(window []float32) (float32, error) {
	n := d.n
	if len(window) != n.window {
		return 0, fmt.Errorf("silero: window of %d samples, want %d", len(window), n.window)
	}
	d.shift()
	copy(d.x[n.context:], window)
	return d.run(), nil
}

// shift moves the last window's tail into the context.
func (d *Detector) shift() {
	n := d.n
	copy(d.x[:n.context], d.x[n.window:n.window+n.context])
}

// run evaluates the network on d.x (context and window filled in).
func (d *Detector) run() float32 {
	n := d.n
	x := d.x
	// Reflect padding on the right: x[L+j] = x[L-2-j].
	L := n.context + n.window
	for j := 0; j < len(x)-L; j++ {
		x[L+j] = x[L-2-j]
	}
	// STFT magnitude: basis [2*bins][nfft] times each frame.
	basis := blas32.General{Rows: 2 * n.bins, Cols: n.nfft, Stride: n.nfft, Data: n.basis}
	for f := 0; f < d.frames; f++ {
		frame := blas32.Vector{N: n.nfft, Inc: 1, Data: x[f*n.hop : f*n.hop+n.nfft]}
		col := blas32.Vector{N: 2 * n.bins, Inc: 1, Data: d.col}
		blas32.Gemv(blas.NoTrans, 1, basis, frame, 0, col)
		for k := 0; k < n.bins; k++ {
			re, im := d.col[k], d.col[n.bins+k]
			d.spec[k*d.frames+f] = float32(math.Sqrt(float64(re*re + im*im)))
		}
	}
	in, t := d.spec, d.frames
	for i := range n.enc {
		t = d.conv(&n.enc[i], in, t, d.act[i])
		in = d.act[i]
	}
	// LSTM cell: gates = W_ih x + W_hh h + b.
	copy(d.gates, n.bias)
	gates := blas32.Vector{N: 4 * hidden, Inc: 1, Data: d.gates}
	blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: 4 * hidden, Cols: hidden, Stride: hidden, Data: n.wIn},
		blas32.Vector{N: hidden, Inc: 1, Data: in}, 1, gates)
	blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: 4 * hidden, Cols: hidden, Stride: hidden, Data: n.wHid},
		blas32.Vector{N: hidden, Inc: 1, Data: d.h}, 1, gates)
	out := n.decB
	for j := 0; j < hidden; j++ {
		ig := sigmoid(d.gates[j])
		fg := sigmoid(d.gates[hidden+j])
		gg := float32(math.Tanh(float64(d.gates[2*hidden+j])))
		og := sigmoid(d.gates[3*hidden+j])
		c := fg*d.c[j] + ig*gg
		h := og * float32(math.Tanh(float64(c)))
		d.c[j], d.h[j] = c, h
		out += n.decW[j] * max(h, 0)
	}
	return sigmoid(out)
}

// conv applies c (padding 1, ReLU) to in [c.in][t] into out [c.out][t'],
// returning t'.
func (d *Detector) conv(c *conv, in []float32, t int, out []float32) int {
	tOut := (t+2-c.k)/c.stride + 1
	w := blas32.General{Rows: c.out, Cols: c.in * c.k, Stride: c.in * c.k, Data: c.w}
	patch := d.patch[:c.in*c.k]
	col := d.col[:c.out] // 2*bins >= 128 for both rates
	for to := 0; to < tOut; to++ {
		for ci := 0; ci < c.in; ci++ {
			for k := 0; k < c.k; k++ {
				ti := to*c.stride + k - 1
				v := float32(0)
				if ti >= 0 && ti < t {
					v = in[ci*t+ti]
				}
				patch[ci*c.k+k] = v
			}
		}
		copy(col, c.b)
		blas32.Gemv(blas.NoTrans, 1, w, blas32.Vector{N: len(patch), Inc: 1, Data: patch}, 1,
			blas32.Vector{N: c.out, Inc: 1, Data: col})
		for o := 0; o < c.out; o++ {
			out[o*tOut+to] = max(col[o], 0)
		}
	}
	return tOut
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
