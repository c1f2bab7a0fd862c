package silero

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is a minimal reader of ONNX model files (onnx.proto3): just
// enough of ModelProto, GraphProto, NodeProto, AttributeProto and
// TensorProto to find a network's weights and check its structure. It reads
// the wire format directly with protowire rather than generated code.

// graph is an ONNX graph: its nodes in order and its constant tensors.
type graph struct {
	nodes []node
	inits map[string]*tensor
}

// node is one operator of a graph.
type node struct {
	op      string
	name    string
	inputs  []string
	outputs []string
	attrs   map[string]*attr
}

// attr is one attribute of a node (the kinds Silero's graph uses).
type attr struct {
	f     float32
	i     int64
	ints  []int64
	s     []byte
	t     *tensor
	g     *graph
	isSet bool
}

// tensor is a constant tensor, converted to float32 (int64 tensors are kept
// in i64 too, for shapes and indices).
type tensor struct {
	name string
	dims []int64
	f32  []float32
	i64  []int64
}

// ONNX TensorProto data types the reader converts.
const (
	dtFloat = 1
	dtInt32 = 6
	dtInt64 = 7
)

var errProto = errors.New("malformed ONNX protobuf")

// fields calls fn for each field of one protobuf message.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errProto
		}
		b = b[n:]
		var v []byte
		var u uint64
		switch typ {
		case protowire.VarintType:
			u, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			u = uint64(x)
		case protowire.Fixed64Type:
			u, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errProto
		}
		b = b[n:]
		if err := fn(num, typ, v, u); err != nil {
			return err
		}
	}
	return nil
}

// readModel parses a ModelProto and returns its main graph.
func readModel(b []byte) (*graph, error) {
	var g *graph
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 7 && typ == protowire.BytesType { // graph
			var err error
			g, err = readGraph(v)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, fmt.Errorf("%w: no graph", errProto)
	}
	return g, nil
}

func readGraph(b []byte) (*graph, error) {
	g := &graph{inits: map[string]*tensor{}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1: // node
			n, err := readNode(v)
			if err != nil {
				return err
			}
			g.nodes = append(g.nodes, n)
		case 5: // initializer
			t, err := readTensor(v)
			if err != nil {
				return err
			}
			g.inits[t.name] = t
		}
		return nil
	})
	return g, err
}

func readNode(b []byte) (node, error) {
	n := node{attrs: map[string]*attr{}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			n.inputs = append(n.inputs, string(v))
		case 2:
			n.outputs = append(n.outputs, string(v))
		case 3:
			n.name = string(v)
		case 4:
			n.op = string(v)
		case 5:
			name, a, err := readAttr(v)
			if err != nil {
				return err
			}
			n.attrs[name] = a
		}
		return nil
	})
	return n, err
}

func readAttr(b []byte) (string, *attr, error) {
	a := &attr{isSet: true}
	var name string
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch num {
		case 1:
			name = string(v)
		case 2:
			a.f = math.Float32frombits(uint32(u))
		case 3:
			a.i = int64(u)
		case 4:
			a.s = v
		case 5:
			t, err := readTensor(v)
			if err != nil {
				return err
			}
			a.t = t
		case 6:
			g, err := readGraph(v)
			if err != nil {
				return err
			}
			a.g = g
		case 8:
			var err error
			if a.ints, err = appendVarints(a.ints, typ, v, u); err != nil {
				return err
			}
		}
		return nil
	})
	return name, a, err
}

func readTensor(b []byte) (*tensor, error) {
	t := &tensor{}
	var dtype uint64
	var raw []byte
	var floats []float32
	var ints []int64
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, u uint64) error {
		switch num {
		case 1: // dims
			var err error
			if t.dims, err = appendVarints(t.dims, typ, v, u); err != nil {
				return err
			}
		case 2:
			dtype = u
		case 4: // float_data
			if typ == protowire.BytesType {
				for ; len(v) >= 4; v = v[4:] {
					floats = append(floats, math.Float32frombits(binary.LittleEndian.Uint32(v)))
				}
			} else {
				floats = append(floats, math.Float32frombits(uint32(u)))
			}
		case 5, 7: // int32_data, int64_data
			var err error
			if ints, err = appendVarints(ints, typ, v, u); err != nil {
				return err
			}
		case 8:
			t.name = string(v)
		case 9:
			raw = v
		case 13, 14:
			return fmt.Errorf("%w: tensor %q: external data is not supported", errProto, t.name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch dtype {
	case dtFloat:
		if raw != nil {
			if len(raw)%4 != 0 {
				return nil, fmt.Errorf("%w: tensor %q: raw data of %d bytes", errProto, t.name, len(raw))
			}
			floats = make([]float32, len(raw)/4)
			for i := range floats {
				floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		t.f32 = floats
	case dtInt64, dtInt32:
		if raw != nil {
			w := 8
			if dtype == dtInt32 {
				w = 4
			}
			ints = make([]int64, len(raw)/w)
			for i := range ints {
				if w == 8 {
					ints[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
				} else {
					ints[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
				}
			}
		}
		t.i64 = ints
		t.f32 = make([]float32, len(ints))
		for i, x := range ints {
			t.f32[i] = float32(x)
		}
	}
	if n := t.size(); n >= 0 && t.f32 != nil && len(t.f32) != n {
		return nil, fmt.Errorf("%w: tensor %q: %d values for shape %v", errProto, t.name, len(t.f32), t.dims)
	}
	return t, nil
}

// size is the number of elements the tensor's shape holds.
func (t *tensor) size() int {
	n := 1
	for _, d := range t.dims {
		n *= int(d)
	}
	return n
}

// appendVarints appends a repeated int64 field's value: one varint, or a packed run of them.
func appendVarints(dst []int64, typ protowire.Type, v []byte, u uint64) ([]int64, error) {
	if typ != protowire.BytesType {
		return append(dst, int64(u)), nil
	}
	for len(v) > 0 {
		x, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return dst, errProto
		}
		dst = append(dst, int64(x))
		v = v[n:]
	}
	return dst, nil
}
