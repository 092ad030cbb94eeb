package filter

import "gateway/filter/internal/abi"

// Request is the request of the current call: valid only during the handler it is passed to (a
// method called after the handler returned panics).
type Request struct {
	handle uint32
	live   bool
}

func (r *Request) h() uint32 {
	if r == nil || !r.live {
		panic("filter: Request used after its handler returned")
	}
	return r.handle
}

// Method is the request method (GET, ...).
func (r *Request) Method() string { return abi.Method(r.h()) }

// Path is the path, without the query.
func (r *Request) Path() string { return abi.Path(r.h()) }

// Query is the query string without '?', and whether there is one.
func (r *Request) Query() (string, bool) { return abi.Query(r.h()) }

// SetPathWithQuery replaces path and query ("/a/b?x=1"). In OnRequest, or in
// OnRequestBody of a filter that asked for the whole request body (the head is held until then).
func (r *Request) SetPathWithQuery(pathWithQuery string) error {
	return abi.SetPathWithQuery(r.h(), pathWithQuery)
}

// Header is the first value of a header, and whether it has one.
func (r *Request) Header(name string) (string, bool) {
	return first(abi.HeaderValues(abi.KindRequest, r.h(), name))
}

// HeaderAll is every value of a header, in order.
func (r *Request) HeaderAll(name string) []string {
	return abi.HeaderValues(abi.KindRequest, r.h(), name)
}

// Headers is every header, in order.
func (r *Request) Headers() []Header { return abi.Headers(abi.KindRequest, r.h()) }

// SetHeader sets a header, replacing every value it had. In OnRequest, or in
// OnRequestBody of a filter that asked for the whole request body (the head is held until then).
func (r *Request) SetHeader(name, value string) error {
	return abi.ChangeHeader(abi.KindRequest, r.h(), abi.SetHeader, name, value)
}

// AppendHeader adds a value to a header. In OnRequest, or in
// OnRequestBody of a filter that asked for the whole request body (the head is held until then).
func (r *Request) AppendHeader(name, value string) error {
	return abi.ChangeHeader(abi.KindRequest, r.h(), abi.AppendHeader, name, value)
}

// RemoveHeader removes a header. In OnRequest, or in
// OnRequestBody of a filter that asked for the whole request body (the head is held until then).
func (r *Request) RemoveHeader(name string) error {
	return abi.ChangeHeader(abi.KindRequest, r.h(), abi.RemoveHeader, name, "")
}

// Body is the body shown to this call (the chunk or the whole body), and false in OnRequest.
func (r *Request) Body() ([]byte, bool) { return abi.Body(abi.KindRequest, r.h()) }

// SetBody replaces the body shown to this call. OnRequestBody only.
func (r *Request) SetBody(body []byte) error { return abi.SetBody(abi.KindRequest, r.h(), body) }

// SetMethod replaces the method (an HTTP token such as "POST"; ErrInvalid otherwise). In OnRequest,
// or in OnRequestBody of a filter that asked for the whole request body (the head is held until
// then). Since WIT 0.1.3.
func (r *Request) SetMethod(method string) error { return abi.SetMethod(r.h(), method) }

// PathParam is one parameter the route's path template captured.
type PathParam struct {
	// Name is the parameter's name in the template ("id" for "/users/{id}").
	Name string
	// Value is its value as it appears in the path the route matched (percent-encoding kept).
	Value string
}

// PathParams are the parameters the route's path template captured, in template order: a route
// matching "/users/{id}/orders/{order}" gives [{id 7} {order a%20b}] for "/users/7/orders/a%20b".
// Values keep their percent-encoding, so they go back into a path as they are. Empty when the
// route has no template. Since WIT 0.1.3.
func (r *Request) PathParams() []PathParam {
	pairs := abi.PathParams(r.h())
	out := make([]PathParam, len(pairs))
	for i, p := range pairs {
		out[i] = PathParam{Name: p.Name, Value: p.Value}
	}
	return out
}

// PathParam is the value of the path template parameter name, as PathParams gives it, and whether
// the route's template has it.
func (r *Request) PathParam(name string) (string, bool) {
	for _, p := range abi.PathParams(r.h()) {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// Response is the response of the current call, with the same rules as Request.
type Response struct {
	handle uint32
	live   bool
}

func (r *Response) h() uint32 {
	if r == nil || !r.live {
		panic("filter: Response used after its handler returned")
	}
	return r.handle
}

// Status is the status code.
func (r *Response) Status() uint16 { return abi.Status(r.h()) }

// SetStatus changes the status code. In OnResponse, or in
// OnResponseBody of a filter that asked for the whole response body (the head is held until then).
func (r *Response) SetStatus(status uint16) error { return abi.SetStatus(r.h(), status) }

// Header is the first value of a header, and whether it has one.
func (r *Response) Header(name string) (string, bool) {
	return first(abi.HeaderValues(abi.KindResponse, r.h(), name))
}

// HeaderAll is every value of a header, in order.
func (r *Response) HeaderAll(name string) []string {
	return abi.HeaderValues(abi.KindResponse, r.h(), name)
}

// Headers is every header, in order.
func (r *Response) Headers() []Header { return abi.Headers(abi.KindResponse, r.h()) }

// SetHeader sets a header. In OnResponse, or in
// OnResponseBody of a filter that asked for the whole response body (the head is held until then).
func (r *Response) SetHeader(name, value string) error {
	return abi.ChangeHeader(abi.KindResponse, r.h(), abi.SetHeader, name, value)
}

// AppendHeader adds a value to a header. In OnResponse, or in
// OnResponseBody of a filter that asked for the whole response body (the head is held until then).
func (r *Response) AppendHeader(name, value string) error {
	return abi.ChangeHeader(abi.KindResponse, r.h(), abi.AppendHeader, name, value)
}

// RemoveHeader removes a header. In OnResponse, or in
// OnResponseBody of a filter that asked for the whole response body (the head is held until then).
func (r *Response) RemoveHeader(name string) error {
	return abi.ChangeHeader(abi.KindResponse, r.h(), abi.RemoveHeader, name, "")
}

// Body is the body shown to this call (chunk or whole), and false in OnResponse.
func (r *Response) Body() ([]byte, bool) { return abi.Body(abi.KindResponse, r.h()) }

// SetBody replaces the body shown to this call. OnResponseBody only.
func (r *Response) SetBody(body []byte) error { return abi.SetBody(abi.KindResponse, r.h(), body) }

func first(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	return values[0], true
}
