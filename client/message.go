package client

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Message is one control message from the server: a data-channel message, or a control
// message on a WebSocket. FastRTC sends two shapes, {"type":T,"data":D} and, for errors
// and warnings, {"type":"error","message":"..."}; both fields are kept raw.
type Message struct {
	// Type is the message's "type": "send_input", "fetch_output", "log", "stopword",
	// "end_stream", "update_connection", "error", "warning", or whatever the server sends.
	Type string `json:"type"`
	// Data is the raw JSON of the "data" field (nil when absent).
	Data json.RawMessage `json:"data,omitempty"`
	// Message is the "message" field of error and warning messages.
	Message string `json:"message,omitempty"`
	// Raw is the whole message as received.
	Raw []byte `json:"-"`
}

// Text returns the message's text as FastRTC's frontends read it (msg.data || msg.message):
// Data when it is a non-empty JSON string, else Message.
func (m Message) Text() string {
	var s string
	if len(m.Data) > 0 && json.Unmarshal(m.Data, &s) == nil && s != "" {
		return s
	}
	return m.Message
}

// parseMessage parses a control message; ok is false for anything that is not a JSON
// object with a string "type".
func parseMessage(b []byte) (Message, bool) {
	var m Message
	if json.Unmarshal(b, &m) != nil || m.Type == "" {
		return Message{}, false
	}
	m.Raw = append([]byte(nil), b...)
	return m, true
}

// queue buffers received items (messages, audio frames) for a reader. Safe for concurrent
// use.
type queue[T any] struct {
	mu      sync.Mutex
	q       []T
	max     int
	dropped int
	notify  chan struct{} // receives a token when q becomes non-empty
	closed  chan struct{} // closed when no more items will come
	once    sync.Once
}

func newQueue[T any](max int) *queue[T] {
	return &queue[T]{max: max, notify: make(chan struct{}, 1), closed: make(chan struct{})}
}

// push adds v, dropping the oldest item when the queue is full.
func (q *queue[T]) push(v T) {
	q.mu.Lock()
	if len(q.q) >= q.max {
		var zero T
		q.q[0] = zero
		q.q = q.q[1:]
		q.dropped++
	}
	q.q = append(q.q, v)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *queue[T]) close() { q.once.Do(func() { close(q.closed) }) }

// pop waits for the next item. Once the queue is closed and empty it returns the error of
// end (ErrClosed if end returns nil).
func (q *queue[T]) pop(ctx context.Context, what string, end func() error) (T, error) {
	var zero T
	for {
		q.mu.Lock()
		if len(q.q) > 0 {
			v := q.q[0]
			q.q[0] = zero
			q.q = q.q[1:]
			more := len(q.q) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.notify <- struct{}{}:
				default:
				}
			}
			return v, nil
		}
		q.mu.Unlock()
		select {
		case <-q.notify:
		case <-q.closed:
			q.mu.Lock()
			empty := len(q.q) == 0
			q.mu.Unlock()
			if empty {
				if err := end(); err != nil {
					return zero, err
				}
				return zero, ErrClosed
			}
		case <-ctx.Done():
			return zero, fmt.Errorf("client: %s: %w", what, ctx.Err())
		}
	}
}

// droppedCount returns how many items were dropped because nobody read them.
func (q *queue[T]) droppedCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}
