// Package http is outbound HTTP to the gateway's named upstreams (only those granted in the
// plugin's `capabilities.upstreams`). The gateway waits for the response without blocking other
// requests; to the filter the call is a plain function call.
//
//	resp, err := http.Send("auth", http.NewRequest("GET", "/check").Header("authorization", token))
package http

import (
	"strings"

	"gateway/filter"
	"gateway/filter/internal/abi"
)

// Request is a request to an upstream.
type Request struct {
	// Method is the method.
	Method string
	// PathWithQuery is path and query, starting with '/'.
	PathWithQuery string
	// Headers are its headers.
	Headers []filter.Header
	// Body is its body.
	Body []byte
	// TimeoutMs is how long to wait for the whole response; 0 means the gateway's maximum (60 s).
	TimeoutMs uint32
}

// NewRequest is a request with no headers, no body and the default timeout.
func NewRequest(method, pathWithQuery string) *Request {
	return &Request{Method: method, PathWithQuery: pathWithQuery}
}

// Header adds a header and returns r.
func (r *Request) Header(name, value string) *Request {
	r.Headers = append(r.Headers, filter.Header{Name: name, Value: value})
	return r
}

// WithBody sets the body and returns r.
func (r *Request) WithBody(body []byte) *Request {
	r.Body = body
	return r
}

// Timeout sets the timeout in milliseconds and returns r.
func (r *Request) Timeout(ms uint32) *Request {
	r.TimeoutMs = ms
	return r
}

// Response is an upstream's response.
type Response struct {
	// Status is the status code.
	Status uint16
	// Headers are its headers.
	Headers []filter.Header
	// Body is its body.
	Body []byte
}

// Header is the first value of a header (names compared case-insensitively), and whether there is
// one.
func (r *Response) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// Send sends r to upstream and waits for the response. Errors (*filter.Error): Denied (not granted,
// or no such upstream), BadRequest, Timeout, Failed.
func Send(upstream string, r *Request) (*Response, error) {
	resp, err := abi.HTTPSend(upstream, &abi.OutgoingRequest{
		Method:        r.Method,
		PathWithQuery: r.PathWithQuery,
		Headers:       r.Headers,
		Body:          r.Body,
		TimeoutMs:     r.TimeoutMs,
	})
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.Status, Headers: resp.Headers, Body: resp.Body}, nil
}

// Get is a GET of pathWithQuery on upstream.
func Get(upstream, pathWithQuery string) (*Response, error) {
	return Send(upstream, NewRequest("GET", pathWithQuery))
}
