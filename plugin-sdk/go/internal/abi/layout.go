package abi

// Lifting (host values in memory -> Go) and lowering (Go -> memory) of the world's types, with the
// canonical ABI's layouts: a string or list is (ptr u32, len u32); a variant, option or result is a
// u8 discriminant followed by the payload at the payload's alignment; records are laid out field by
// field at each field's alignment.

// Header is one header (WIT types.header, tuple<string, string>).
type Header struct {
	Name, Value string
}

// LiftString copies the string of n bytes at ptr.
func LiftString(m Memory, ptr, n uint32) string {
	if n == 0 {
		return ""
	}
	return string(m.Bytes(ptr, n))
}

// LiftBytes copies the n bytes at ptr.
func LiftBytes(m Memory, ptr, n uint32) []byte {
	out := make([]byte, n)
	if n > 0 {
		copy(out, m.Bytes(ptr, n))
	}
	return out
}

// StringAt lifts the string whose (ptr, len) is at `at`.
func StringAt(m Memory, at uint32) string { return LiftString(m, u32(m, at), u32(m, at+4)) }

// BytesAt lifts the list<u8> whose (ptr, len) is at `at`.
func BytesAt(m Memory, at uint32) []byte { return LiftBytes(m, u32(m, at), u32(m, at+4)) }

// StringsAt lifts the list<string> whose (ptr, len) is at `at` (elements of 8 bytes).
func StringsAt(m Memory, at uint32) []string {
	ptr, n := u32(m, at), u32(m, at+4)
	out := make([]string, n)
	for i := uint32(0); i < n; i++ {
		out[i] = StringAt(m, ptr+8*i)
	}
	return out
}

// HeadersAt lifts the list<tuple<string, string>> whose (ptr, len) is at `at` (elements of 16
// bytes: name at 0, value at 8).
func HeadersAt(m Memory, at uint32) []Header { return LiftHeaders(m, u32(m, at), u32(m, at+4)) }

// LiftHeaders lifts the n headers at ptr.
func LiftHeaders(m Memory, ptr, n uint32) []Header {
	out := make([]Header, n)
	for i := uint32(0); i < n; i++ {
		e := ptr + 16*i
		out[i] = Header{Name: StringAt(m, e), Value: StringAt(m, e+8)}
	}
	return out
}

// OptionStringAt lifts an option<string> (discriminant at 0, string at 4; 12 bytes).
func OptionStringAt(m Memory, at uint32) (string, bool) {
	if u8(m, at) == 0 {
		return "", false
	}
	return StringAt(m, at+4), true
}

// OptionBytesAt lifts an option<list<u8>> (same layout as option<string>).
func OptionBytesAt(m Memory, at uint32) ([]byte, bool) {
	if u8(m, at) == 0 {
		return nil, false
	}
	return BytesAt(m, at+4), true
}

// hostErrorAt lifts a types.host-error (discriminant at 0, message at 4; 12 bytes).
func hostErrorAt(m Memory, at uint32) error {
	kinds := [...]ErrorKind{Denied, Invalid, WrongPhase, Unsupported}
	d := u8(m, at)
	if int(d) >= len(kinds) {
		return &Error{Kind: Unsupported, Message: "unknown host-error case from the host"}
	}
	return &Error{Kind: kinds[d], Message: StringAt(m, at+4)}
}

// UnitResultAt lifts a result<_, host-error> (discriminant at 0, error at 4; 16 bytes).
func UnitResultAt(m Memory, at uint32) error {
	if u8(m, at) == 0 {
		return nil
	}
	return hostErrorAt(m, at+4)
}

// IncomingResponse is http-client.incoming-response.
type IncomingResponse struct {
	Status  uint16
	Headers []Header
	Body    []byte
}

// HTTPResultSize is the size of a result<incoming-response, http-error> (align 4): an element of
// send-all's result list.
const HTTPResultSize = 24

// HTTPResultAt lifts a result<incoming-response, http-error>: the payload at 4; the response is
// status u16 at 4, headers at 8, body at 16; the error is its discriminant at 4, message at 8.
func HTTPResultAt(m Memory, at uint32) (IncomingResponse, error) {
	if u8(m, at) == 0 {
		return IncomingResponse{
			Status:  u16(m, at+4),
			Headers: HeadersAt(m, at+8),
			Body:    BytesAt(m, at+16),
		}, nil
	}
	e := at + 4
	switch u8(m, e) {
	case 0:
		return IncomingResponse{}, &Error{Kind: Denied, Message: StringAt(m, e+4)}
	case 1:
		return IncomingResponse{}, &Error{Kind: BadRequest, Message: StringAt(m, e+4)}
	case 2:
		return IncomingResponse{}, &Error{Kind: Timeout}
	case 3:
		return IncomingResponse{}, &Error{Kind: Failed, Message: StringAt(m, e+4)}
	}
	return IncomingResponse{}, &Error{Kind: Unsupported, Message: "unknown http-error case from the host"}
}

// HTTPResult is one element of send-all's list<result<incoming-response, http-error>>: the
// response, or the error (Err non-nil).
type HTTPResult struct {
	Response IncomingResponse
	Err      error
}

// HTTPResultsAt lifts the list<result<incoming-response, http-error>> whose (ptr, len) is at `at`
// (elements of HTTPResultSize bytes, each as HTTPResultAt reads it).
func HTTPResultsAt(m Memory, at uint32) []HTTPResult {
	ptr, n := u32(m, at), u32(m, at+4)
	out := make([]HTTPResult, n)
	for i := uint32(0); i < n; i++ {
		out[i].Response, out[i].Err = HTTPResultAt(m, ptr+HTTPResultSize*i)
	}
	return out
}

// ClientCertificate is facts.client-certificate.
type ClientCertificate struct {
	Subject string
	SANs    []string
}

// TLSFacts is facts.tls-facts.
type TLSFacts struct {
	ServerName, ALPN       string
	HasServerName, HasALPN bool
	Version                string
	ClientCertificate      *ClientCertificate
}

// RequestFacts is facts.request-facts.
type RequestFacts struct {
	Route                       string
	Upstream                    string
	HasUpstream                 bool
	ClientAddress, LocalAddress string
	Scheme, Protocol            string
	RequestID                   uint64
	TLS                         *TLSFacts
}

// RequestFactsSize is the size of facts.request-facts (align 8).
const RequestFactsSize = 120

// RequestFactsAt lifts a facts.request-facts: route 0, upstream 8 (option, 12 bytes), client
// address 20, local address 28, scheme 36, protocol 44, request id 56 (u64), tls 64 (option of a
// 52-byte record at 68).
func RequestFactsAt(m Memory, at uint32) RequestFacts {
	f := RequestFacts{
		Route:         StringAt(m, at),
		ClientAddress: StringAt(m, at+20),
		LocalAddress:  StringAt(m, at+28),
		Scheme:        StringAt(m, at+36),
		Protocol:      StringAt(m, at+44),
		RequestID:     u64(m, at+56),
	}
	f.Upstream, f.HasUpstream = OptionStringAt(m, at+8)
	if u8(m, at+64) != 0 {
		f.TLS = tlsFactsAt(m, at+68)
	}
	return f
}

// tlsFactsAt lifts a facts.tls-facts: server name 0 (option), alpn 12 (option), version 24, client
// certificate 32 (option: discriminant, then subject at 36 and sans at 44).
func tlsFactsAt(m Memory, at uint32) *TLSFacts {
	t := &TLSFacts{Version: StringAt(m, at+24)}
	t.ServerName, t.HasServerName = OptionStringAt(m, at)
	t.ALPN, t.HasALPN = OptionStringAt(m, at+12)
	if u8(m, at+32) != 0 {
		t.ClientCertificate = &ClientCertificate{
			Subject: StringAt(m, at+36),
			SANs:    StringsAt(m, at+44),
		}
	}
	return t
}

// Consumer is consumers.consumer.
type Consumer struct {
	Name   string
	Groups []string
}

// Credential is consumers.credential; Attributes is its list<tuple<string, string>>, lifted as
// headers (the same layout).
type Credential struct {
	Consumer   Consumer
	ID         string
	Attributes []Header
}

// OptionConsumerSize is the size of an option<consumer> (align 4).
const OptionConsumerSize = 20

// OptionConsumerAt lifts an option<consumer>: discriminant at 0, the consumer at 4 (name at 4,
// groups at 12); nil for none.
func OptionConsumerAt(m Memory, at uint32) *Consumer {
	if u8(m, at) == 0 {
		return nil
	}
	return &Consumer{Name: StringAt(m, at+4), Groups: StringsAt(m, at+12)}
}

// OptionCredentialSize is the size of an option<credential> (align 4).
const OptionCredentialSize = 36

// OptionCredentialAt lifts an option<credential>: discriminant at 0, the credential at 4 (its
// consumer's name at 4 and groups at 12, id at 20, attributes at 28); nil for none.
func OptionCredentialAt(m Memory, at uint32) *Credential {
	if u8(m, at) == 0 {
		return nil
	}
	return &Credential{
		Consumer:   Consumer{Name: StringAt(m, at+4), Groups: StringsAt(m, at+12)},
		ID:         StringAt(m, at+20),
		Attributes: HeadersAt(m, at+28),
	}
}

// LowerString places s and returns its (ptr, len).
func LowerString(m Memory, s string) (uint32, uint32) {
	if len(s) == 0 {
		return 0, 0
	}
	return m.String(s), uint32(len(s))
}

// LowerBytes places b and returns its (ptr, len).
func LowerBytes(m Memory, b []byte) (uint32, uint32) {
	if len(b) == 0 {
		return 0, 0
	}
	return m.Slice(b), uint32(len(b))
}

// LowerHeaders places a list<tuple<string, string>> and returns its (ptr, len).
func LowerHeaders(m Memory, hs []Header) (uint32, uint32) {
	if len(hs) == 0 {
		return 0, 0
	}
	base := m.Alloc(uint32(16*len(hs)), 4)
	for i, h := range hs {
		e := base + uint32(16*i)
		np, nn := LowerString(m, h.Name)
		vp, vn := LowerString(m, h.Value)
		put32(m, e, np)
		put32(m, e+4, nn)
		put32(m, e+8, vp)
		put32(m, e+12, vn)
	}
	return base, uint32(len(hs))
}

// UpstreamRequest is one element of send-all's list<tuple<string, outgoing-request>>.
type UpstreamRequest struct {
	Upstream string
	Request  *OutgoingRequest
}

// OutgoingRequestSize is the size of an http-client.outgoing-request (align 4): method at 0, path
// with query at 8, headers at 16, body at 24, timeout-ms (u32) at 32.
const OutgoingRequestSize = 36

// UpstreamRequestSize is the size of a tuple<string, outgoing-request> (align 4): the upstream's
// name at 0, the request at 8.
const UpstreamRequestSize = 8 + OutgoingRequestSize

// lowerOutgoingRequest writes r as an outgoing-request at `at`.
func lowerOutgoingRequest(m Memory, at uint32, r *OutgoingRequest) {
	mp, mn := LowerString(m, r.Method)
	pp, pn := LowerString(m, r.PathWithQuery)
	hp, hn := LowerHeaders(m, r.Headers)
	bp, bn := LowerBytes(m, r.Body)
	put32(m, at, mp)
	put32(m, at+4, mn)
	put32(m, at+8, pp)
	put32(m, at+12, pn)
	put32(m, at+16, hp)
	put32(m, at+20, hn)
	put32(m, at+24, bp)
	put32(m, at+28, bn)
	put32(m, at+32, r.TimeoutMs)
}

// LowerUpstreamRequests places a list<tuple<string, outgoing-request>> and returns its (ptr, len).
func LowerUpstreamRequests(m Memory, rs []UpstreamRequest) (uint32, uint32) {
	if len(rs) == 0 {
		return 0, 0
	}
	base := m.Alloc(uint32(UpstreamRequestSize*len(rs)), 4)
	for i, r := range rs {
		e := base + uint32(UpstreamRequestSize*i)
		up, upn := LowerString(m, r.Upstream)
		put32(m, e, up)
		put32(m, e+4, upn)
		lowerOutgoingRequest(m, e+8, r.Request)
	}
	return base, uint32(len(rs))
}

// LowerInitResult writes init's result<options, string> (12 bytes: discriminant at 0; options'
// two body-mode bytes at 4 and 5, or the error string at 4) and returns its address.
func LowerInitResult(m Memory, requestBody, responseBody uint8, errMsg string, failed bool) uint32 {
	ret := m.Alloc(12, 4)
	if failed {
		put8(m, ret, 1)
		p, n := LowerString(m, errMsg)
		put32(m, ret+4, p)
		put32(m, ret+8, n)
		return ret
	}
	put8(m, ret+4, requestBody)
	put8(m, ret+5, responseBody)
	return ret
}

// LowerAction writes a types.action (24 bytes: discriminant at 0; for respond the local-response
// at 4: status u16 at 4, headers at 8, body at 16) and returns its address.
func LowerAction(m Memory, respond bool, status uint16, headers []Header, body []byte) uint32 {
	ret := m.Alloc(24, 4)
	if !respond {
		return ret
	}
	put8(m, ret, 1)
	put16(m, ret+4, status)
	hp, hn := LowerHeaders(m, headers)
	put32(m, ret+8, hp)
	put32(m, ret+12, hn)
	bp, bn := LowerBytes(m, body)
	put32(m, ret+16, bp)
	put32(m, ret+20, bn)
	return ret
}
