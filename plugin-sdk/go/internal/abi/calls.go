package abi

import "fmt"

// The host calls as Go functions: each lowers its arguments, gives the host a return area, lifts
// the result (copying it into Go values) and releases every block of the call.

// Handle kinds: which resource a handle is.
const (
	KindRequest  = 0
	KindResponse = 1
)

func scope() func() {
	mark := Mem.Mark()
	return func() { Mem.Release(mark) }
}

// Method is request.method.
func Method(h uint32) string {
	defer scope()()
	ret := Mem.Alloc(8, 4)
	reqMethod(h, ret)
	return StringAt(Mem, ret)
}

// Path is request.path.
func Path(h uint32) string {
	defer scope()()
	ret := Mem.Alloc(8, 4)
	reqPath(h, ret)
	return StringAt(Mem, ret)
}

// Query is request.query.
func Query(h uint32) (string, bool) {
	defer scope()()
	ret := Mem.Alloc(12, 4)
	reqQuery(h, ret)
	return OptionStringAt(Mem, ret)
}

// SetPathWithQuery is request.set-path-with-query.
func SetPathWithQuery(h uint32, pathWithQuery string) error {
	defer scope()()
	p, n := LowerString(Mem, pathWithQuery)
	ret := Mem.Alloc(16, 4)
	reqSetPathWithQuery(h, p, n, ret)
	return UnitResultAt(Mem, ret)
}

// SetMethod is request.set-method (since 0.1.3).
func SetMethod(h uint32, method string) error {
	defer scope()()
	p, n := LowerString(Mem, method)
	ret := Mem.Alloc(16, 4)
	reqSetMethod(h, p, n, ret)
	return UnitResultAt(Mem, ret)
}

// PathParams is request.path-params (since 0.1.3): a list<tuple<string, string>>, lifted as
// headers (the same layout).
func PathParams(h uint32) []Header {
	defer scope()()
	ret := Mem.Alloc(8, 4)
	reqPathParams(h, ret)
	return HeadersAt(Mem, ret)
}

// HeaderValues is request.header or response.header.
func HeaderValues(kind int, h uint32, name string) []string {
	defer scope()()
	p, n := LowerString(Mem, name)
	ret := Mem.Alloc(8, 4)
	if kind == KindRequest {
		reqHeader(h, p, n, ret)
	} else {
		respHeader(h, p, n, ret)
	}
	return StringsAt(Mem, ret)
}

// Headers is request.headers or response.headers.
func Headers(kind int, h uint32) []Header {
	defer scope()()
	ret := Mem.Alloc(8, 4)
	if kind == KindRequest {
		reqHeaders(h, ret)
	} else {
		respHeaders(h, ret)
	}
	return HeadersAt(Mem, ret)
}

// HeaderOp says which header change to make.
type HeaderOp int

// The header changes.
const (
	SetHeader HeaderOp = iota
	AppendHeader
	RemoveHeader
)

// ChangeHeader is set-header, append-header or remove-header of request or response.
func ChangeHeader(kind int, h uint32, op HeaderOp, name, value string) error {
	defer scope()()
	np, nn := LowerString(Mem, name)
	vp, vn := LowerString(Mem, value)
	ret := Mem.Alloc(16, 4)
	switch {
	case kind == KindRequest && op == SetHeader:
		reqSetHeader(h, np, nn, vp, vn, ret)
	case kind == KindRequest && op == AppendHeader:
		reqAppendHeader(h, np, nn, vp, vn, ret)
	case kind == KindRequest:
		reqRemoveHeader(h, np, nn, ret)
	case op == SetHeader:
		respSetHeader(h, np, nn, vp, vn, ret)
	case op == AppendHeader:
		respAppendHeader(h, np, nn, vp, vn, ret)
	default:
		respRemoveHeader(h, np, nn, ret)
	}
	return UnitResultAt(Mem, ret)
}

// Body is request.body or response.body.
func Body(kind int, h uint32) ([]byte, bool) {
	defer scope()()
	ret := Mem.Alloc(12, 4)
	if kind == KindRequest {
		reqBody(h, ret)
	} else {
		respBody(h, ret)
	}
	return OptionBytesAt(Mem, ret)
}

// SetBody is request.set-body or response.set-body.
func SetBody(kind int, h uint32, body []byte) error {
	defer scope()()
	p, n := LowerBytes(Mem, body)
	ret := Mem.Alloc(16, 4)
	if kind == KindRequest {
		reqSetBody(h, p, n, ret)
	} else {
		respSetBody(h, p, n, ret)
	}
	return UnitResultAt(Mem, ret)
}

// Status is response.status.
func Status(h uint32) uint16 { return uint16(respStatus(h)) }

// SetStatus is response.set-status.
func SetStatus(h uint32, status uint16) error {
	defer scope()()
	ret := Mem.Alloc(16, 4)
	respSetStatus(h, uint32(status), ret)
	return UnitResultAt(Mem, ret)
}

// OutgoingRequest is http-client.outgoing-request.
type OutgoingRequest struct {
	Method, PathWithQuery string
	Headers               []Header
	Body                  []byte
	TimeoutMs             uint32
}

// HTTPSend is http-client.send.
func HTTPSend(upstream string, r *OutgoingRequest) (IncomingResponse, error) {
	defer scope()()
	up, upn := LowerString(Mem, upstream)
	mp, mn := LowerString(Mem, r.Method)
	pp, pn := LowerString(Mem, r.PathWithQuery)
	hp, hn := LowerHeaders(Mem, r.Headers)
	bp, bn := LowerBytes(Mem, r.Body)
	ret := Mem.Alloc(24, 4)
	httpSend(up, upn, mp, mn, pp, pn, hp, hn, bp, bn, r.TimeoutMs, ret)
	return HTTPResultAt(Mem, ret)
}

// HTTPSendAll is http-client.send-all (since 0.1.3): one result per request, in order. A host
// that answered fewer requests than it was given (a host bug) gives the missing ones an
// Unsupported error rather than a shorter list; answers beyond the requests are ignored.
func HTTPSendAll(rs []UpstreamRequest) []HTTPResult {
	defer scope()()
	p, n := LowerUpstreamRequests(Mem, rs)
	ret := Mem.Alloc(8, 4)
	httpSendAll(p, n, ret)
	got := HTTPResultsAt(Mem, ret)
	if len(got) >= len(rs) {
		return got[:len(rs)]
	}
	out := make([]HTTPResult, len(rs))
	copy(out, got)
	for i := len(got); i < len(rs); i++ {
		out[i].Err = &Error{Kind: Unsupported, Message: fmt.Sprintf("the host answered %d of %d requests", len(got), len(rs))}
	}
	return out
}

func option64(v *uint64) (uint32, uint64) {
	if v == nil {
		return 0, 0
	}
	return 1, *v
}

// The store calls' results, result<T, store-error>: a u8 discriminant at 0, then T or the
// store-error (12 bytes, align 4) at T's alignment, 4 or 8.

// BackendKind is store.backend-kind (an enum: a u8 case index).
type BackendKind uint8

// The cases of store.backend-kind.
const (
	BackendLocal BackendKind = 0
	BackendRedis BackendKind = 1
)

// StoreBackend is store.backend: result<backend-kind, store-error> (the u8 case index at 4; 16
// bytes).
func StoreBackend() (BackendKind, error) {
	defer scope()()
	ret := Mem.Alloc(16, 4)
	storeBackend(ret)
	if err := storeResultAt(Mem, ret, 4); err != nil {
		return 0, err
	}
	k := BackendKind(u8(Mem, ret+4))
	if k > BackendRedis {
		return 0, &Error{Kind: Unsupported, Message: "unknown backend-kind case from the host"}
	}
	return k, nil
}

// StoreGet is store.get: result<option<entry>, store-error> (20 bytes: the option's discriminant
// at 4, the entry at 8: value list at 8, version u32 at 16).
func StoreGet(key string) ([]byte, uint32, bool, error) {
	defer scope()()
	p, n := LowerString(Mem, key)
	ret := Mem.Alloc(20, 4)
	storeGet(p, n, ret)
	if err := storeResultAt(Mem, ret, 4); err != nil {
		return nil, 0, false, err
	}
	if u8(Mem, ret+4) == 0 {
		return nil, 0, false, nil
	}
	return BytesAt(Mem, ret+8), u32(Mem, ret+16), true, nil
}

// StoreSet is store.set: result<u32, store-error> (the version at 4; 16 bytes).
func StoreSet(key string, value []byte, ttlMs *uint64) (uint32, error) {
	defer scope()()
	kp, kn := LowerString(Mem, key)
	vp, vn := LowerBytes(Mem, value)
	has, t := option64(ttlMs)
	ret := Mem.Alloc(16, 4)
	storeSet(kp, kn, vp, vn, has, t, ret)
	if err := storeResultAt(Mem, ret, 4); err != nil {
		return 0, err
	}
	return u32(Mem, ret+4), nil
}

// StoreDelete is store.delete: result<_, store-error> (16 bytes).
func StoreDelete(key string) error {
	defer scope()()
	p, n := LowerString(Mem, key)
	ret := Mem.Alloc(16, 4)
	storeDelete(p, n, ret)
	return storeResultAt(Mem, ret, 4)
}

// StoreIncrement is store.increment (ttlMs nil: none): result<s64, store-error> (the s64, or the
// error, at 8; 24 bytes, align 8).
func StoreIncrement(key string, delta int64, ttlMs *uint64) (int64, error) {
	defer scope()()
	p, n := LowerString(Mem, key)
	has, t := option64(ttlMs)
	ret := Mem.Alloc(24, 8)
	storeIncrement(p, n, delta, has, t, ret)
	if err := storeResultAt(Mem, ret, 8); err != nil {
		return 0, err
	}
	return int64(u64(Mem, ret+8)), nil
}

// StoreCompareAndSwap is store.compare-and-swap: result<u32, store-error> like StoreSet.
func StoreCompareAndSwap(key string, version uint32, value []byte, ttlMs *uint64) (uint32, error) {
	defer scope()()
	kp, kn := LowerString(Mem, key)
	vp, vn := LowerBytes(Mem, value)
	has, t := option64(ttlMs)
	ret := Mem.Alloc(16, 4)
	storeCompareAndSwap(kp, kn, version, vp, vn, has, t, ret)
	if err := storeResultAt(Mem, ret, 4); err != nil {
		return 0, err
	}
	return u32(Mem, ret+4), nil
}

// Log is log.log (level: 0 trace .. 4 error).
func Log(level uint32, message string) {
	defer scope()()
	p, n := LowerString(Mem, message)
	logLog(level, p, n)
}

// LogEnabled is log.enabled.
func LogEnabled(level uint32) bool { return logEnabled(level) != 0 }

// MetricOp says which metrics call to make.
type MetricOp int

// The metrics calls.
const (
	CounterAdd MetricOp = iota
	GaugeSet
	GaugeAdd
	HistogramRecord
)

// Metric is metrics.counter-add, gauge-set, gauge-add or histogram-record; v is the u64 or s64
// argument's bits.
func Metric(op MetricOp, name string, v uint64) error {
	defer scope()()
	p, n := LowerString(Mem, name)
	ret := Mem.Alloc(16, 4)
	switch op {
	case CounterAdd:
		metricsCounterAdd(p, n, v, ret)
	case GaugeSet:
		metricsGaugeSet(p, n, v, ret)
	case GaugeAdd:
		metricsGaugeAdd(p, n, int64(v), ret)
	default:
		metricsHistogramRecord(p, n, v, ret)
	}
	return UnitResultAt(Mem, ret)
}

// NowMs is clock.now-ms.
func NowMs() uint64 { return clockNowMs() }

// MonotonicNs is clock.monotonic-ns.
func MonotonicNs() uint64 { return clockMonotonicNs() }

// RandomBytes is random.bytes.
func RandomBytes(n uint32) []byte {
	defer scope()()
	ret := Mem.Alloc(8, 4)
	randomBytes(n, ret)
	return BytesAt(Mem, ret)
}

// RandomU64 is random.next-u64.
func RandomU64() uint64 { return randomNextU64() }

// Facts is facts.get.
func Facts() RequestFacts {
	defer scope()()
	ret := Mem.Alloc(RequestFactsSize, 8)
	factsGet(ret)
	return RequestFactsAt(Mem, ret)
}

// ConsumersCurrent is consumers.current.
func ConsumersCurrent() *Consumer {
	defer scope()()
	ret := Mem.Alloc(OptionConsumerSize, 4)
	consumersCurrent(ret)
	return OptionConsumerAt(Mem, ret)
}

// ConsumersAuthenticate is consumers.authenticate.
func ConsumersAuthenticate(name string) error {
	defer scope()()
	p, n := LowerString(Mem, name)
	ret := Mem.Alloc(16, 4)
	consumersAuthenticate(p, n, ret)
	return UnitResultAt(Mem, ret)
}

// ConsumersGet is consumers.get.
func ConsumersGet(name string) *Consumer {
	defer scope()()
	p, n := LowerString(Mem, name)
	ret := Mem.Alloc(OptionConsumerSize, 4)
	consumersGet(p, n, ret)
	return OptionConsumerAt(Mem, ret)
}

// ConsumersFindByKey is consumers.find-by-key.
func ConsumersFindByKey(kind, key string) *Consumer {
	defer scope()()
	kp, kn := LowerString(Mem, kind)
	keyp, keyn := LowerString(Mem, key)
	ret := Mem.Alloc(OptionConsumerSize, 4)
	consumersFindByKey(kp, kn, keyp, keyn, ret)
	return OptionConsumerAt(Mem, ret)
}

// ConsumersCheckSecret is consumers.check-secret.
func ConsumersCheckSecret(kind, id, secret string) *Consumer {
	defer scope()()
	kp, kn := LowerString(Mem, kind)
	idp, idn := LowerString(Mem, id)
	sp, sn := LowerString(Mem, secret)
	ret := Mem.Alloc(OptionConsumerSize, 4)
	consumersCheckSecret(kp, kn, idp, idn, sp, sn, ret)
	return OptionConsumerAt(Mem, ret)
}

// ConsumersFindCredential is consumers.find-credential.
func ConsumersFindCredential(kind, id string) *Credential {
	defer scope()()
	kp, kn := LowerString(Mem, kind)
	idp, idn := LowerString(Mem, id)
	ret := Mem.Alloc(OptionCredentialSize, 4)
	consumersFindCredential(kp, kn, idp, idn, ret)
	return OptionCredentialAt(Mem, ret)
}

// HMACAlgorithms is how many cases consumers.hmac-algorithm has (sha256 0, sha384 1, sha512 2).
const HMACAlgorithms = 3

// ConsumersVerifyHMAC is consumers.verify-hmac; algorithm is the hmac-algorithm's case index (below
// HMACAlgorithms: the host traps on any other).
func ConsumersVerifyHMAC(kind, id string, algorithm uint32, message, mac []byte) *Consumer {
	defer scope()()
	kp, kn := LowerString(Mem, kind)
	idp, idn := LowerString(Mem, id)
	mp, mn := LowerBytes(Mem, message)
	macp, macn := LowerBytes(Mem, mac)
	ret := Mem.Alloc(OptionConsumerSize, 4)
	consumersVerifyHMAC(kp, kn, idp, idn, algorithm, mp, mn, macp, macn, ret)
	return OptionConsumerAt(Mem, ret)
}

// DropBorrow ends the guest's borrow of the request or response handle an export was given: the
// canonical ABI requires it before the export returns.
func DropBorrow(kind int, h uint32) {
	if kind == KindRequest {
		reqDrop(h)
	} else {
		respDrop(h)
	}
}

// TraceSetAttribute is trace.set-attribute (since 0.1.4).
func TraceSetAttribute(key, value string) {
	defer scope()()
	kp, kn := LowerString(Mem, key)
	vp, vn := LowerString(Mem, value)
	traceSetAttribute(kp, kn, vp, vn)
}

// TraceAddEvent is trace.add-event (since 0.1.4): attributes lowered as a list<tuple<string, string>>.
func TraceAddEvent(name string, attrs []Header) {
	defer scope()()
	np, nn := LowerString(Mem, name)
	ap, an := LowerHeaders(Mem, attrs)
	traceAddEvent(np, nn, ap, an)
}

// The flags of phases.phase-set (since 0.1.5), in WIT order.
const (
	PhaseRequest uint32 = 1 << iota
	PhaseRequestBody
	PhaseResponse
	PhaseResponseBody
)

// DeclarePhases is phases.declare (since 0.1.5): the handlers the filter has, from init.
func DeclarePhases(used uint32) error {
	defer scope()()
	ret := Mem.Alloc(16, 4)
	phasesDeclare(used, ret)
	return UnitResultAt(Mem, ret)
}
