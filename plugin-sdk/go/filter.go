// Package filter is the Go SDK for gateway filters: the guest side of the gateway's WIT world
// (wit/world.wit, gateway:filter@0.1.5).
//
// A filter is a type that implements Filter (Init and Options; embed Base for both) and the handler
// interfaces of the phases it uses (RequestFilter, RequestBodyFilter, ResponseFilter,
// ResponseBodyFilter). Register one value from an init function:
//
//	type AddHeader struct{ filter.Base }
//
//	func (AddHeader) OnRequest(req *filter.Request) filter.Action {
//		_ = req.SetHeader("x-hello", "world")
//		return filter.Continue()
//	}
//
//	func init() { filter.Register(&AddHeader{}) }
//	func main() {}
//
// The SDK tells the gateway which handlers the type has (WIT 0.1.5 `phases`): the gateway never
// enters the filter for a phase it has no handler for, and shows it no body it has no handler for.
// A handler whose signature is not exactly the interface's is not a handler.
//
// Build it with `cargo xtask go-filter build DIR` (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared,
// then packaged as a component). Host capabilities live in the sub-packages http, kv, log, metrics,
// clock, random, facts and consumers.
package filter

import "gateway/filter/internal/abi"

// Filter is what every filter implements. One value lives in each instance: Init configures it for
// its route, then the handlers it has run for the requests the instance serves, one after another
// (Go filters run with `instance_mode: reuse`, so a value serves many requests; keep nothing of one
// request in it for the next).
type Filter interface {
	// Init configures the filter with its route's config (a string as written, other YAML as
	// JSON). An error rejects the config when the gateway loads it, with the error's text.
	Init(config string) error
	// Options says how the filter wants to see bodies (read once, after Init).
	Options() Options
}

// RequestFilter is a filter with a request headers handler.
type RequestFilter interface {
	// OnRequest: the request headers arrived; headers, path and query may be changed here.
	OnRequest(req *Request) Action
}

// RequestBodyFilter is a filter with a request body handler.
type RequestBodyFilter interface {
	// OnRequestBody: the request body (whole, or one chunk), if Options asked for it.
	OnRequestBody(req *Request, endOfStream bool) Action
}

// ResponseFilter is a filter with a response headers handler.
type ResponseFilter interface {
	// OnResponse: the response headers arrived (from the backend or a local response).
	OnResponse(resp *Response) Action
}

// ResponseBodyFilter is a filter with a response body handler.
type ResponseBodyFilter interface {
	// OnResponseBody: the response body (whole, or one chunk), like OnRequestBody.
	OnResponseBody(resp *Response, endOfStream bool) Action
}

// Base implements Filter: Init accepts any config and Options asks for no bodies. It has no
// handlers, so the phases a filter uses are the handlers its own type adds. Embed it.
type Base struct{}

// Init accepts any config.
func (Base) Init(string) error { return nil }

// Options asks for no bodies.
func (Base) Options() Options { return Options{} }

// phases is the set of handlers f has, as WIT phases flags.
func phases(f Filter) uint32 {
	var set uint32
	if _, ok := f.(RequestFilter); ok {
		set |= abi.PhaseRequest
	}
	if _, ok := f.(RequestBodyFilter); ok {
		set |= abi.PhaseRequestBody
	}
	if _, ok := f.(ResponseFilter); ok {
		set |= abi.PhaseResponse
	}
	if _, ok := f.(ResponseBodyFilter); ok {
		set |= abi.PhaseResponseBody
	}
	return set
}

// BodyMode is how a filter wants to see a body.
type BodyMode uint8

// The body modes.
const (
	// Skip: the body streams past the filter, nothing is buffered (the default).
	Skip BodyMode = iota
	// Whole: the gateway buffers the body (up to the route's limit) and calls the body handler once.
	Whole
	// Chunks: the body handler is called once per chunk as it arrives.
	Chunks
)

// Options is what a filter asks for when it is configured.
type Options struct {
	// RequestBody is how OnRequestBody sees the request body.
	RequestBody BodyMode
	// ResponseBody is how OnResponseBody sees the response body.
	ResponseBody BodyMode
}

// Header is a header's name and value.
type Header = abi.Header

// LocalResponse is a response made by the filter instead of the backend's.
type LocalResponse struct {
	// Status is the status code (100-999).
	Status uint16
	// Headers are its headers.
	Headers []Header
	// Body is its body.
	Body []byte
}

// Action is what a handler decided: continue (Local is nil) or answer with Local.
type Action struct {
	// Local is the response to answer with; nil means continue.
	Local *LocalResponse
}

// Continue goes on with the next filter (or the backend, or the client).
func Continue() Action { return Action{} }

// Respond stops here and answers with status and body.
func Respond(status uint16, body []byte) Action {
	return Action{Local: &LocalResponse{Status: status, Body: body}}
}

// RespondString is Respond with a string body.
func RespondString(status uint16, body string) Action { return Respond(status, []byte(body)) }

// WithHeader adds a header to a local response (no effect on Continue).
func (a Action) WithHeader(name, value string) Action {
	if a.Local != nil {
		a.Local.Headers = append(a.Local.Headers, Header{Name: name, Value: value})
	}
	return a
}

// Error is why a host call did not do what was asked; match it with errors.Is against ErrDenied,
// ErrInvalid, ... or inspect its Kind.
type Error = abi.Error

// ErrorKind is the case of the WIT error variant a host call returned.
type ErrorKind = abi.ErrorKind

// The error kinds (types.host-error, http-client.http-error, kv.kv-error, store.store-error).
const (
	Denied          = abi.Denied
	Invalid         = abi.Invalid
	WrongPhase      = abi.WrongPhase
	Unsupported     = abi.Unsupported
	BadRequest      = abi.BadRequest
	Timeout         = abi.Timeout
	Failed          = abi.Failed
	VersionMismatch = abi.VersionMismatch
	NotANumber      = abi.NotANumber
	Unavailable     = abi.Unavailable
)

// Targets for errors.Is: each matches every error of its kind.
var (
	ErrDenied          error = &Error{Kind: Denied}
	ErrInvalid         error = &Error{Kind: Invalid}
	ErrWrongPhase      error = &Error{Kind: WrongPhase}
	ErrUnsupported     error = &Error{Kind: Unsupported}
	ErrBadRequest      error = &Error{Kind: BadRequest}
	ErrTimeout         error = &Error{Kind: Timeout}
	ErrFailed          error = &Error{Kind: Failed}
	ErrVersionMismatch error = &Error{Kind: VersionMismatch}
	ErrNotANumber      error = &Error{Kind: NotANumber}
	ErrUnavailable     error = &Error{Kind: Unavailable}
)
