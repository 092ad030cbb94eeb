// Package trace adds attributes and events to the span of the current filter call, when the
// gateway traces the request (`server.tracing`; WIT 0.1.4). Each call does nothing when the request
// is not traced or not sampled, or outside a filter call; it never fails. Keys over 256 bytes are
// ignored, values and names cut at 4096 bytes.
//
//	trace.SetAttribute("auth.scheme", "key")
//	trace.AddEvent("cache.miss", trace.Attr{Key: "key", Value: "/users/1"})
package trace

import "gateway/filter/internal/abi"

// Attr is one attribute of an event.
type Attr struct {
	Key   string
	Value string
}

// SetAttribute sets the attribute key to value on the span of this call (a later call with the
// same key replaces it).
func SetAttribute(key, value string) { abi.TraceSetAttribute(key, value) }

// AddEvent adds the event name, timestamped now, with attrs, to the span of this call.
func AddEvent(name string, attrs ...Attr) {
	hs := make([]abi.Header, len(attrs))
	for i, a := range attrs {
		hs[i] = abi.Header{Name: a.Key, Value: a.Value}
	}
	abi.TraceAddEvent(name, hs)
}
