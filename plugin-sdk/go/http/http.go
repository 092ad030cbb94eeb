// Package http is outbound HTTP to the gateway's named upstreams (only those granted in the
// plugin's `capabilities.upstreams`). The gateway waits for the response without blocking other
// requests; to the filter the call is a plain function call.
//
//	resp, err := http.Send("auth", http.NewRequest("GET", "/check").Header("authorization", token))
//
// SendAll sends several requests at once (to one upstream or several) and waits for all of them.
package http

import (
	"fmt"
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
	return response(abi.HTTPSend(upstream, outgoing(r)))
}

// MaxSendAll is the most requests SendAll takes in one call.
const MaxSendAll = 32

// Call is one request of SendAll: where it goes and what it is.
type Call struct {
	// Upstream is the name of the upstream to send Request to.
	Upstream string
	// Request is the request.
	Request *Request
}

// Result is the answer to one Call of SendAll: the response, or (Err non-nil, Response nil) the
// error Send would have returned for that request alone.
type Result struct {
	// Response is the upstream's response; nil when Err is set.
	Response *Response
	// Err is why the request got no response.
	Err error
}

// SendAll sends every call's request at once, each to its upstream with its own timeout, and waits
// for all of them: it takes as long as the slowest request, not the sum. The results are in the
// order of calls, one per call, each what Send would have given for it alone (the same errors).
// More than MaxSendAll calls get filter.ErrBadRequest each, and none is sent. Since WIT 0.1.3.
//
//	rs := http.SendAll([]http.Call{
//		{Upstream: "users", Request: http.NewRequest("GET", "/users/7")},
//		{Upstream: "orders", Request: http.NewRequest("GET", "/orders?user=7").Timeout(500)},
//	})
//	if rs[0].Err != nil { ... }
func SendAll(calls []Call) []Result {
	if len(calls) == 0 {
		return nil
	}
	rs := make([]abi.UpstreamRequest, len(calls))
	for i, c := range calls {
		if c.Request == nil {
			panic(fmt.Sprintf("http.SendAll: calls[%d] has no Request", i))
		}
		rs[i] = abi.UpstreamRequest{Upstream: c.Upstream, Request: outgoing(c.Request)}
	}
	got := abi.HTTPSendAll(rs)
	out := make([]Result, len(got))
	for i, g := range got {
		out[i].Response, out[i].Err = response(g.Response, g.Err)
	}
	return out
}

func outgoing(r *Request) *abi.OutgoingRequest {
	return &abi.OutgoingRequest{
		Method:        r.Method,
		PathWithQuery: r.PathWithQuery,
		Headers:       r.Headers,
		Body:          r.Body,
		TimeoutMs:     r.TimeoutMs,
	}
}

func response(resp abi.IncomingResponse, err error) (*Response, error) {
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.Status, Headers: resp.Headers, Body: resp.Body}, nil
}

// Get is a GET of pathWithQuery on upstream.
func Get(upstream, pathWithQuery string) (*Response, error) {
	return Send(upstream, NewRequest("GET", pathWithQuery))
}
