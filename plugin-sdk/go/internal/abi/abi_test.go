//go:build !wasip1

package abi

import (
	"errors"
	"reflect"
	"testing"
)

// host helpers: what the host does when it returns values (allocate through realloc, write).

func hostString(m Memory, at uint32, s string) {
	p := m.String(s)
	put32(m, at, p)
	put32(m, at+4, uint32(len(s)))
}

func hostStrings(m Memory, at uint32, ss []string) {
	base := m.Alloc(uint32(8*len(ss)), 4)
	for i, s := range ss {
		hostString(m, base+uint32(8*i), s)
	}
	put32(m, at, base)
	put32(m, at+4, uint32(len(ss)))
}

func hostHeaders(m Memory, at uint32, hs []Header) {
	base := m.Alloc(uint32(16*len(hs)), 4)
	for i, h := range hs {
		hostString(m, base+uint32(16*i), h.Name)
		hostString(m, base+uint32(16*i)+8, h.Value)
	}
	put32(m, at, base)
	put32(m, at+4, uint32(len(hs)))
}

func fresh(t *testing.T) *FakeMemory {
	t.Helper()
	f := NewFakeMemory()
	Mem = f
	return f
}

func TestStringResultsAndRelease(t *testing.T) {
	f := fresh(t)
	var gotHandle uint32
	reqMethod = func(h, ret uint32) {
		gotHandle = h
		hostString(Mem, ret, "PATCH")
	}
	before := f.Size()
	if got := Method(42); got != "PATCH" || gotHandle != 42 {
		t.Fatalf("Method = %q (handle %d)", got, gotHandle)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	reqPath = func(h, ret uint32) { hostString(Mem, ret, "") }
	if got := Path(1); got != "" {
		t.Fatalf("empty path = %q", got)
	}
}

func TestOptions(t *testing.T) {
	fresh(t)
	reqQuery = func(h, ret uint32) {}
	if q, ok := Query(1); ok || q != "" {
		t.Fatalf("none: %q %v", q, ok)
	}
	reqQuery = func(h, ret uint32) {
		put8(Mem, ret, 1)
		hostString(Mem, ret+4, "a=1&b")
	}
	if q, ok := Query(1); !ok || q != "a=1&b" {
		t.Fatalf("some: %q %v", q, ok)
	}
	respBody = func(h, ret uint32) {
		put8(Mem, ret, 1)
		p := Mem.Slice([]byte{0, 1, 2})
		put32(Mem, ret+4, p)
		put32(Mem, ret+8, 3)
	}
	if b, ok := Body(KindResponse, 1); !ok || !reflect.DeepEqual(b, []byte{0, 1, 2}) {
		t.Fatalf("body: %v %v", b, ok)
	}
}

func TestListsOfStringsAndHeaders(t *testing.T) {
	fresh(t)
	var gotName string
	reqHeader = func(h, p, n, ret uint32) {
		gotName = LiftString(Mem, p, n)
		hostStrings(Mem, ret, []string{"1", "", "three"})
	}
	if got := HeaderValues(KindRequest, 3, "x-multi"); !reflect.DeepEqual(got, []string{"1", "", "three"}) || gotName != "x-multi" {
		t.Fatalf("header: %q (asked %q)", got, gotName)
	}
	want := []Header{{"a", "1"}, {"content-type", "application/json"}}
	respHeaders = func(h, ret uint32) { hostHeaders(Mem, ret, want) }
	if got := Headers(KindResponse, 3); !reflect.DeepEqual(got, want) {
		t.Fatalf("headers: %v", got)
	}
	respHeaders = func(h, ret uint32) { hostHeaders(Mem, ret, nil) }
	if got := Headers(KindResponse, 3); len(got) != 0 {
		t.Fatalf("no headers: %v", got)
	}
}

func TestHostErrors(t *testing.T) {
	fresh(t)
	cases := []struct {
		disc uint8
		kind ErrorKind
	}{{0, Denied}, {1, Invalid}, {2, WrongPhase}, {3, Unsupported}}
	for _, c := range cases {
		var name, value string
		reqSetHeader = func(h, np, nn, vp, vn, ret uint32) {
			name, value = LiftString(Mem, np, nn), LiftString(Mem, vp, vn)
			put8(Mem, ret, 1)
			put8(Mem, ret+4, c.disc)
			hostString(Mem, ret+8, "why")
		}
		err := ChangeHeader(KindRequest, 1, SetHeader, "x-a", "b")
		var e *Error
		if !errors.As(err, &e) || e.Kind != c.kind || e.Message != "why" || name != "x-a" || value != "b" {
			t.Fatalf("case %d: %v (%q=%q)", c.disc, err, name, value)
		}
		if !errors.Is(err, &Error{Kind: c.kind}) || errors.Is(err, &Error{Kind: Timeout}) {
			t.Fatalf("errors.Is on %v", err)
		}
	}
	respSetStatus = func(h, status, ret uint32) {
		if status != 404 {
			t.Errorf("status %d", status)
		}
	}
	if err := SetStatus(1, 404); err != nil {
		t.Fatalf("ok result: %v", err)
	}
}

func TestHTTPSend(t *testing.T) {
	fresh(t)
	var seen OutgoingRequest
	var seenUp string
	httpSend = func(up, upn, mp, mn, pp, pn, hp, hn, bp, bn, timeout, ret uint32) {
		seenUp = LiftString(Mem, up, upn)
		seen = OutgoingRequest{Method: LiftString(Mem, mp, mn), PathWithQuery: LiftString(Mem, pp, pn), Body: LiftBytes(Mem, bp, bn), TimeoutMs: timeout}
		seen.Headers = LiftHeaders(Mem, hp, hn)
		put16(Mem, ret+4, 201)
		hostHeaders(Mem, ret+8, []Header{{"x-user", "alice"}})
		p := Mem.Slice([]byte("ok"))
		put32(Mem, ret+16, p)
		put32(Mem, ret+20, 2)
	}
	req := &OutgoingRequest{Method: "POST", PathWithQuery: "/check?x=1", Headers: []Header{{"authorization", "Bearer a"}, {"x-e", ""}}, Body: []byte("tok"), TimeoutMs: 250}
	resp, err := HTTPSend("auth", req)
	if err != nil || resp.Status != 201 || string(resp.Body) != "ok" || !reflect.DeepEqual(resp.Headers, []Header{{"x-user", "alice"}}) {
		t.Fatalf("response: %+v %v", resp, err)
	}
	if seenUp != "auth" || !reflect.DeepEqual(&seen, req) {
		t.Fatalf("request as the host saw it: %q %+v", seenUp, seen)
	}
	for disc, kind := range []ErrorKind{Denied, BadRequest, Timeout, Failed} {
		httpSend = func(up, upn, mp, mn, pp, pn, hp, hn, bp, bn, timeout, ret uint32) {
			put8(Mem, ret, 1)
			put8(Mem, ret+4, uint8(disc))
			if kind != Timeout {
				hostString(Mem, ret+8, "m")
			}
		}
		_, err := HTTPSend("x", &OutgoingRequest{})
		var e *Error
		if !errors.As(err, &e) || e.Kind != kind || (kind != Timeout) != (e.Message == "m") {
			t.Fatalf("http error %d: %v", disc, err)
		}
	}
}

func TestSetMethodAndPathParams(t *testing.T) {
	f := fresh(t)
	var seen string
	var seenHandle uint32
	reqSetMethod = func(h, p, n, ret uint32) {
		seenHandle, seen = h, LiftString(Mem, p, n)
		if ret%4 != 0 || len(f.Bytes(ret, 16)) != 16 {
			t.Errorf("result<_, host-error> return area: %d", ret)
		}
	}
	before := f.Size()
	if err := SetMethod(7, "PATCH"); err != nil || seen != "PATCH" || seenHandle != 7 {
		t.Fatalf("set method: %v (host saw %q on %d)", err, seen, seenHandle)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	reqSetMethod = func(h, p, n, ret uint32) {
		put8(Mem, ret, 1)
		put8(Mem, ret+4, 1)
		hostString(Mem, ret+8, "not a token")
	}
	if err := SetMethod(7, "BAD METHOD"); !errors.Is(err, &Error{Kind: Invalid, Message: "not a token"}) {
		t.Fatalf("invalid method: %v", err)
	}

	// list<tuple<string, string>>: 16-byte elements, name at 0, value at 8.
	want := []Header{{"id", "7"}, {"order", "a%20b"}, {"empty", ""}}
	reqPathParams = func(h, ret uint32) {
		seenHandle = h
		base := Mem.Alloc(uint32(16*len(want)), 4)
		for i, p := range want {
			np, vp := Mem.String(p.Name), Mem.String(p.Value)
			put32(Mem, base+uint32(16*i), np)
			put32(Mem, base+uint32(16*i)+4, uint32(len(p.Name)))
			put32(Mem, base+uint32(16*i)+8, vp)
			put32(Mem, base+uint32(16*i)+12, uint32(len(p.Value)))
		}
		put32(Mem, ret, base)
		put32(Mem, ret+4, uint32(len(want)))
	}
	before = f.Size()
	if got := PathParams(3); !reflect.DeepEqual(got, want) || seenHandle != 3 {
		t.Fatalf("path params: %q (handle %d)", got, seenHandle)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	reqPathParams = func(h, ret uint32) {}
	if got := PathParams(3); len(got) != 0 {
		t.Fatalf("no template: %q", got)
	}
}

// sentRequest is a tuple<string, outgoing-request> read the way the host reads it, at the offsets
// CanonicalABI.md gives: 44-byte elements of align 4; the upstream's (ptr, len) at 0, then the
// record at 8 with method 8, path with query 16, headers 24, body 32, timeout-ms 40.
func sentRequest(m Memory, e uint32) (string, OutgoingRequest) {
	return LiftString(m, u32(m, e), u32(m, e+4)), OutgoingRequest{
		Method:        LiftString(m, u32(m, e+8), u32(m, e+12)),
		PathWithQuery: LiftString(m, u32(m, e+16), u32(m, e+20)),
		Headers:       LiftHeaders(m, u32(m, e+24), u32(m, e+28)),
		Body:          LiftBytes(m, u32(m, e+32), u32(m, e+36)),
		TimeoutMs:     u32(m, e+40),
	}
}

func TestHTTPSendAll(t *testing.T) {
	f := fresh(t)
	if UpstreamRequestSize != 44 || HTTPResultSize != 24 || OutgoingRequestSize != 36 {
		t.Fatalf("sizes: tuple %d, result %d, record %d", UpstreamRequestSize, HTTPResultSize, OutgoingRequestSize)
	}
	reqs := []UpstreamRequest{
		{"users", &OutgoingRequest{Method: "GET", PathWithQuery: "/users/7", Headers: []Header{{"x-a", "1"}, {"x-b", ""}}, TimeoutMs: 500}},
		{"orders", &OutgoingRequest{Method: "POST", PathWithQuery: "/orders?user=7", Body: []byte("{}"), TimeoutMs: 0}},
		{"", &OutgoingRequest{}},
		{"a", &OutgoingRequest{Method: "GET", PathWithQuery: "/"}},
		{"b", &OutgoingRequest{Method: "GET", PathWithQuery: "/"}},
		{"c", &OutgoingRequest{Method: "GET", PathWithQuery: "/"}},
	}
	var seenUps []string
	var seen []OutgoingRequest
	// The host answers: a response, then each http-error case (denied, bad-request, timeout,
	// failed), then a response with no headers and no body.
	httpSendAll = func(p, n, ret uint32) {
		if p%4 != 0 {
			t.Errorf("list<tuple<string, outgoing-request>> at %d", p)
		}
		seenUps, seen = nil, nil
		for i := uint32(0); i < n; i++ {
			up, r := sentRequest(Mem, p+44*i)
			seenUps = append(seenUps, up)
			seen = append(seen, r)
		}
		base := Mem.Alloc(24*n, 4)
		e := base
		put16(Mem, e+4, 200)
		hostHeaders(Mem, e+8, []Header{{"x-user", "7"}})
		put32(Mem, e+16, Mem.Slice([]byte("alice")))
		put32(Mem, e+20, 5)
		for disc := uint8(0); disc < 4; disc++ {
			e = base + 24*uint32(1+disc)
			put8(Mem, e, 1)
			put8(Mem, e+4, disc)
			if disc != 2 {
				hostString(Mem, e+8, "m")
			}
		}
		put16(Mem, base+24*5+4, 204)
		put32(Mem, ret, base)
		put32(Mem, ret+4, n)
	}
	before := f.Size()
	got := HTTPSendAll(reqs)
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	for i, r := range reqs {
		want := *r.Request
		if want.Headers == nil {
			want.Headers = []Header{}
		}
		if seenUps[i] != r.Upstream || !reflect.DeepEqual(seen[i].Headers, want.Headers) ||
			seen[i].Method != want.Method || seen[i].PathWithQuery != want.PathWithQuery ||
			string(seen[i].Body) != string(want.Body) || seen[i].TimeoutMs != want.TimeoutMs {
			t.Fatalf("request %d as the host saw it: %q %+v", i, seenUps[i], seen[i])
		}
	}
	if len(got) != 6 {
		t.Fatalf("%d results", len(got))
	}
	if r := got[0]; r.Err != nil || r.Response.Status != 200 || string(r.Response.Body) != "alice" ||
		!reflect.DeepEqual(r.Response.Headers, []Header{{"x-user", "7"}}) {
		t.Fatalf("result 0: %+v", r)
	}
	for i, kind := range []ErrorKind{Denied, BadRequest, Timeout, Failed} {
		var e *Error
		if r := got[1+i]; !errors.As(r.Err, &e) || e.Kind != kind || (kind != Timeout) != (e.Message == "m") {
			t.Fatalf("result %d: %+v", 1+i, r)
		}
	}
	if r := got[5]; r.Err != nil || r.Response.Status != 204 || len(r.Response.Headers) != 0 || len(r.Response.Body) != 0 {
		t.Fatalf("result 5: %+v", r)
	}

	// A host that answers fewer requests than it was given: the missing ones are errors, the
	// list keeps one result per request; extra answers are ignored.
	httpSendAll = func(p, n, ret uint32) {
		base := Mem.Alloc(24, 4)
		put16(Mem, base+4, 200)
		put32(Mem, ret, base)
		put32(Mem, ret+4, 1)
	}
	got = HTTPSendAll(reqs[:3])
	if len(got) != 3 || got[0].Err != nil || got[0].Response.Status != 200 ||
		!errors.Is(got[1].Err, &Error{Kind: Unsupported}) || !errors.Is(got[2].Err, &Error{Kind: Unsupported}) {
		t.Fatalf("short answer: %+v", got)
	}
	httpSendAll = func(p, n, ret uint32) {
		base := Mem.Alloc(48, 4)
		put16(Mem, base+4, 201)
		put16(Mem, base+24+4, 202)
		put32(Mem, ret, base)
		put32(Mem, ret+4, 2)
	}
	if got = HTTPSendAll(reqs[:1]); len(got) != 1 || got[0].Response.Status != 201 {
		t.Fatalf("long answer: %+v", got)
	}
}

// hostStoreError writes a store.store-error of case disc at `at` (its message at at+4 for denied,
// invalid and unavailable).
func hostStoreError(m Memory, at uint32, disc uint8, msg string) {
	put8(m, at, disc)
	if disc == 0 || disc == 3 || disc == 4 {
		hostString(m, at+4, msg)
	}
}

// storeErrorCases are store-error's five cases in discriminant order, with the kind each lifts to
// and whether it carries the host's message.
var storeErrorCases = []struct {
	kind    ErrorKind
	message bool
}{{Denied, true}, {VersionMismatch, false}, {NotANumber, false}, {Invalid, true}, {Unavailable, true}}

func checkStoreError(t *testing.T, what string, disc int, err error) {
	t.Helper()
	c := storeErrorCases[disc]
	want := ""
	if c.message {
		want = "why"
	}
	var e *Error
	if !errors.As(err, &e) || e.Kind != c.kind || e.Message != want {
		t.Fatalf("%s, store-error case %d: %v", what, disc, err)
	}
	if !errors.Is(err, &Error{Kind: c.kind}) {
		t.Fatalf("%s, store-error case %d: errors.Is(%v, kind %v)", what, disc, err, c.kind)
	}
}

func TestStoreGet(t *testing.T) {
	f := fresh(t)
	storeGet = func(p, n, ret uint32) {
		if LiftString(Mem, p, n) != "k" {
			t.Errorf("key")
		}
		if ret%4 != 0 || len(f.Bytes(ret, 20)) != 20 {
			t.Errorf("result<option<entry>, store-error> return area: %d", ret)
		}
		put8(Mem, ret+4, 1)
		p2 := Mem.Slice([]byte("v"))
		put32(Mem, ret+8, p2)
		put32(Mem, ret+12, 1)
		put32(Mem, ret+16, 9)
	}
	before := f.Size()
	v, ver, found, err := StoreGet("k")
	if string(v) != "v" || ver != 9 || !found || err != nil {
		t.Fatalf("get: %q %d %v %v", v, ver, found, err)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	storeGet = func(p, n, ret uint32) {}
	if _, _, found, err := StoreGet("k"); found || err != nil {
		t.Fatalf("get none: %v %v", found, err)
	}
	for disc := range storeErrorCases {
		storeGet = func(p, n, ret uint32) {
			put8(Mem, ret, 1)
			hostStoreError(Mem, ret+4, uint8(disc), "why")
		}
		v, _, found, err := StoreGet("k")
		checkStoreError(t, "get", disc, err)
		if v != nil || found {
			t.Fatalf("get error %d with a value: %q %v", disc, v, found)
		}
	}
	storeGet = func(p, n, ret uint32) {
		put8(Mem, ret, 1)
		hostStoreError(Mem, ret+4, 4, "redis did not answer within 50ms")
	}
	if _, _, _, err := StoreGet("k"); err.Error() != "unavailable: redis did not answer within 50ms" {
		t.Fatalf("unavailable text: %v", err)
	}
	storeGet = func(p, n, ret uint32) {
		put8(Mem, ret, 1)
		put8(Mem, ret+4, 5)
	}
	if _, _, _, err := StoreGet("k"); !errors.Is(err, &Error{Kind: Unsupported}) {
		t.Fatalf("a sixth case: %v", err)
	}
}

func TestStoreWrites(t *testing.T) {
	fresh(t)
	var has uint32
	var ttlSeen uint64
	var key, value string
	storeSet = func(kp, kn, vp, vn, hasTTL uint32, ttl uint64, ret uint32) {
		key, value = LiftString(Mem, kp, kn), LiftString(Mem, vp, vn)
		has, ttlSeen = hasTTL, ttl
		put32(Mem, ret+4, 77)
	}
	ms := uint64(1500)
	if ver, err := StoreSet("k", []byte("v"), &ms); ver != 77 || err != nil || has != 1 || ttlSeen != 1500 || key != "k" || value != "v" {
		t.Fatalf("set: %d %v ttl %d/%d (%q=%q)", ver, err, has, ttlSeen, key, value)
	}
	if _, _ = StoreSet("k", nil, nil); has != 0 || value != "" {
		t.Fatalf("set without ttl: %d %q", has, value)
	}
	var version uint32
	storeCompareAndSwap = func(kp, kn, ver, vp, vn, hasTTL uint32, ttl uint64, ret uint32) {
		version, has, ttlSeen = ver, hasTTL, ttl
		put32(Mem, ret+4, ver+1)
	}
	ms = 60_000
	if ver, err := StoreCompareAndSwap("k", 3, []byte("x"), &ms); ver != 4 || err != nil || version != 3 || has != 1 || ttlSeen != 60_000 {
		t.Fatalf("cas: %d %v (version %d, ttl %d/%d)", ver, err, version, has, ttlSeen)
	}
	storeDelete = func(p, n, ret uint32) { key = LiftString(Mem, p, n) }
	if err := StoreDelete("gone"); err != nil || key != "gone" {
		t.Fatalf("delete: %v (%q)", err, key)
	}
	for disc := range storeErrorCases {
		fail := func(ret uint32) {
			put8(Mem, ret, 1)
			hostStoreError(Mem, ret+4, uint8(disc), "why")
		}
		storeSet = func(kp, kn, vp, vn, hasTTL uint32, ttl uint64, ret uint32) { fail(ret) }
		storeCompareAndSwap = func(kp, kn, ver, vp, vn, hasTTL uint32, ttl uint64, ret uint32) { fail(ret) }
		storeDelete = func(p, n, ret uint32) { fail(ret) }
		ver, err := StoreSet("k", nil, nil)
		checkStoreError(t, "set", disc, err)
		if ver != 0 {
			t.Fatalf("set error %d with a version: %d", disc, ver)
		}
		_, err = StoreCompareAndSwap("k", 1, nil, nil)
		checkStoreError(t, "compare-and-swap", disc, err)
		checkStoreError(t, "delete", disc, StoreDelete("k"))
	}
}

func TestStoreIncrement(t *testing.T) {
	f := fresh(t)
	var has uint32
	var ttlSeen uint64
	storeIncrement = func(p, n uint32, delta int64, hasTTL uint32, ttl uint64, ret uint32) {
		if ret%8 != 0 || len(f.Bytes(ret, 24)) != 24 {
			t.Errorf("return area of result<s64, store-error> must be 24 bytes, 8-aligned: %d", ret)
		}
		has, ttlSeen = hasTTL, ttl
		binaryPut64(ret+8, uint64(delta*2))
	}
	if n, err := StoreIncrement("k", -21, nil); n != -42 || err != nil || has != 0 {
		t.Fatalf("increment: %d %v (ttl %d)", n, err, has)
	}
	ms := uint64(60_000)
	if n, err := StoreIncrement("k", 1<<40, &ms); n != 1<<41 || err != nil || has != 1 || ttlSeen != 60_000 {
		t.Fatalf("increment with ttl: %d %v (ttl %d/%d)", n, err, has, ttlSeen)
	}
	for disc := range storeErrorCases {
		storeIncrement = func(p, n uint32, delta int64, hasTTL uint32, ttl uint64, ret uint32) {
			put8(Mem, ret, 1)
			// The error sits at 8 (the payload's alignment is s64's); 4..8 is padding.
			put32(Mem, ret+4, 0xffffffff)
			hostStoreError(Mem, ret+8, uint8(disc), "why")
		}
		n, err := StoreIncrement("k", 1, &ms)
		checkStoreError(t, "increment", disc, err)
		if n != 0 {
			t.Fatalf("increment error %d with a value: %d", disc, n)
		}
	}
}

func TestStoreBackend(t *testing.T) {
	f := fresh(t)
	for _, want := range []BackendKind{BackendLocal, BackendRedis} {
		storeBackend = func(ret uint32) {
			if ret%4 != 0 || len(f.Bytes(ret, 16)) != 16 {
				t.Errorf("result<backend-kind, store-error> return area: %d", ret)
			}
			put8(Mem, ret+4, uint8(want))
		}
		if got, err := StoreBackend(); got != want || err != nil {
			t.Fatalf("backend: %d %v, want %d", got, err, want)
		}
	}
	storeBackend = func(ret uint32) { put8(Mem, ret+4, 2) }
	if _, err := StoreBackend(); !errors.Is(err, &Error{Kind: Unsupported}) {
		t.Fatalf("a third backend: %v", err)
	}
	for disc := range storeErrorCases {
		storeBackend = func(ret uint32) {
			put8(Mem, ret, 1)
			hostStoreError(Mem, ret+4, uint8(disc), "why")
		}
		_, err := StoreBackend()
		checkStoreError(t, "backend", disc, err)
	}
}

func binaryPut64(at uint32, v uint64) {
	b := Mem.Bytes(at, 8)
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

func TestFacts(t *testing.T) {
	fresh(t)
	factsGet = func(ret uint32) {
		if ret%8 != 0 {
			t.Errorf("request-facts is 8-aligned: %d", ret)
		}
		hostString(Mem, ret, "api")
		put8(Mem, ret+8, 1)
		hostString(Mem, ret+12, "backend")
		hostString(Mem, ret+20, "127.0.0.1:5000")
		hostString(Mem, ret+28, "127.0.0.1:8080")
		hostString(Mem, ret+36, "https")
		hostString(Mem, ret+44, "2")
		binaryPut64(ret+56, 1<<40+7)
		put8(Mem, ret+64, 1)
		tls := ret + 68
		put8(Mem, tls, 1)
		hostString(Mem, tls+4, "example.com")
		hostString(Mem, tls+24, "TLSv1.3")
		put8(Mem, tls+32, 1)
		hostString(Mem, tls+36, "CN=alice")
		hostStrings(Mem, tls+44, []string{"DNS:a", "IP:127.0.0.1"})
	}
	got := Facts()
	want := RequestFacts{
		Route: "api", Upstream: "backend", HasUpstream: true, ClientAddress: "127.0.0.1:5000",
		LocalAddress: "127.0.0.1:8080", Scheme: "https", Protocol: "2", RequestID: 1<<40 + 7,
		TLS: &TLSFacts{ServerName: "example.com", HasServerName: true, Version: "TLSv1.3",
			ClientCertificate: &ClientCertificate{Subject: "CN=alice", SANs: []string{"DNS:a", "IP:127.0.0.1"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("facts:\n got %+v %+v\nwant %+v %+v", got, got.TLS, want, want.TLS)
	}
	factsGet = func(ret uint32) {}
	if got := Facts(); got.TLS != nil || got.HasUpstream {
		t.Fatalf("no tls, no upstream: %+v", got)
	}
}

func TestLowerExportResults(t *testing.T) {
	f := fresh(t)
	ret := LowerInitResult(f, 2, 1, "", false)
	if ret%4 != 0 || u8(f, ret) != 0 || u8(f, ret+4) != 2 || u8(f, ret+5) != 1 {
		t.Fatalf("init ok: % x", f.Bytes(ret, 12))
	}
	ret = LowerInitResult(f, 0, 0, "bad config", true)
	if u8(f, ret) != 1 || StringAt(f, ret+4) != "bad config" {
		t.Fatalf("init err: % x", f.Bytes(ret, 12))
	}
	ret = LowerAction(f, false, 0, nil, nil)
	if u8(f, ret) != 0 {
		t.Fatalf("continue")
	}
	ret = LowerAction(f, true, 418, []Header{{"content-type", "text/plain"}, {"x", ""}}, []byte("tea"))
	if u8(f, ret) != 1 || u16(f, ret+4) != 418 || string(BytesAt(f, ret+16)) != "tea" ||
		!reflect.DeepEqual(HeadersAt(f, ret+8), []Header{{"content-type", "text/plain"}, {"x", ""}}) {
		t.Fatalf("respond: % x", f.Bytes(ret, 24))
	}
}

func TestLogMetricsClockRandom(t *testing.T) {
	fresh(t)
	var level uint32
	var msg string
	logLog = func(l, p, n uint32) { level, msg = l, LiftString(Mem, p, n) }
	Log(3, "careful")
	if level != 3 || msg != "careful" {
		t.Fatalf("log: %d %q", level, msg)
	}
	logEnabled = func(l uint32) uint32 { return map[bool]uint32{true: 1}[l >= 2] }
	if LogEnabled(1) || !LogEnabled(4) {
		t.Fatalf("enabled")
	}
	var delta int64
	metricsGaugeAdd = func(p, n uint32, d int64, ret uint32) { delta = d }
	if err := Metric(GaugeAdd, "g", uint64(^uint64(4))); err != nil || delta != -5 {
		t.Fatalf("gauge add: %v %d", err, delta)
	}
	randomBytes = func(n, ret uint32) {
		p := Mem.Slice(make([]byte, n))
		put32(Mem, ret, p)
		put32(Mem, ret+4, n)
	}
	if b := RandomBytes(33); len(b) != 33 {
		t.Fatalf("random bytes: %d", len(b))
	}
	clockNowMs = func() uint64 { return 5 }
	if NowMs() != 5 {
		t.Fatalf("now")
	}
}

func TestErrorText(t *testing.T) {
	if got := (&Error{Kind: Timeout}).Error(); got != "timeout" {
		t.Fatal(got)
	}
	if got := (&Error{Kind: WrongPhase, Message: "body phase"}).Error(); got != "wrong phase: body phase" {
		t.Fatal(got)
	}
	if got := (&Error{Kind: Unavailable, Message: "timed out"}).Error(); got != "unavailable: timed out" {
		t.Fatal(got)
	}
	if errors.Is(&Error{Kind: Denied, Message: "a"}, &Error{Kind: Denied, Message: "b"}) {
		t.Fatal("a target with a message matches only that message")
	}
}

// hostConsumer writes a consumers.consumer (name at 0, groups at 8) at `at`.
func hostConsumer(m Memory, at uint32, name string, groups []string) {
	hostString(m, at, name)
	hostStrings(m, at+8, groups)
}

func TestConsumersLookups(t *testing.T) {
	f := fresh(t)
	consumersCurrent = func(ret uint32) {
		if ret%4 != 0 || len(f.Bytes(ret, OptionConsumerSize)) != OptionConsumerSize {
			t.Errorf("option<consumer> return area: %d", ret)
		}
		put8(Mem, ret, 1)
		hostConsumer(Mem, ret+4, "alice", []string{"admins", "ops"})
	}
	before := f.Size()
	if got := ConsumersCurrent(); !reflect.DeepEqual(got, &Consumer{Name: "alice", Groups: []string{"admins", "ops"}}) {
		t.Fatalf("current: %+v", got)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	consumersCurrent = func(ret uint32) {}
	if got := ConsumersCurrent(); got != nil {
		t.Fatalf("current none: %+v", got)
	}

	var asked []string
	consumersGet = func(p, n, ret uint32) {
		asked = []string{LiftString(Mem, p, n)}
		put8(Mem, ret, 1)
		hostConsumer(Mem, ret+4, "anonymous", nil)
	}
	if got := ConsumersGet("anonymous"); got == nil || got.Name != "anonymous" || len(got.Groups) != 0 ||
		!reflect.DeepEqual(asked, []string{"anonymous"}) {
		t.Fatalf("get: %+v (asked %q)", got, asked)
	}

	consumersFindByKey = func(kp, kn, keyp, keyn, ret uint32) {
		asked = []string{LiftString(Mem, kp, kn), LiftString(Mem, keyp, keyn)}
		if asked[1] == "k-alice" {
			put8(Mem, ret, 1)
			hostConsumer(Mem, ret+4, "alice", []string{"g"})
		}
	}
	if got := ConsumersFindByKey("key-auth", "k-alice"); got == nil || got.Name != "alice" ||
		!reflect.DeepEqual(got.Groups, []string{"g"}) || !reflect.DeepEqual(asked, []string{"key-auth", "k-alice"}) {
		t.Fatalf("find-by-key: %+v (asked %q)", got, asked)
	}
	if got := ConsumersFindByKey("key-auth", "other"); got != nil {
		t.Fatalf("find-by-key of an unknown key: %+v", got)
	}

	consumersCheckSecret = func(kp, kn, idp, idn, sp, sn, ret uint32) {
		asked = []string{LiftString(Mem, kp, kn), LiftString(Mem, idp, idn), LiftString(Mem, sp, sn)}
		put8(Mem, ret, 1)
		hostConsumer(Mem, ret+4, "bob", nil)
	}
	if got := ConsumersCheckSecret("basic-auth", "bob", "pw"); got == nil || got.Name != "bob" ||
		!reflect.DeepEqual(asked, []string{"basic-auth", "bob", "pw"}) {
		t.Fatalf("check-secret: %+v (asked %q)", got, asked)
	}
	// An empty secret is lowered as (0, 0), which the host reads as "".
	consumersCheckSecret = func(kp, kn, idp, idn, sp, sn, ret uint32) {
		if sp != 0 || sn != 0 {
			t.Errorf("empty secret lowered as (%d, %d)", sp, sn)
		}
	}
	if got := ConsumersCheckSecret("basic-auth", "bob", ""); got != nil {
		t.Fatalf("check-secret none: %+v", got)
	}
}

func TestConsumersCredential(t *testing.T) {
	f := fresh(t)
	var kind, id string
	consumersFindCredential = func(kp, kn, idp, idn, ret uint32) {
		if ret%4 != 0 || len(f.Bytes(ret, OptionCredentialSize)) != OptionCredentialSize {
			t.Errorf("option<credential> return area: %d", ret)
		}
		kind, id = LiftString(Mem, kp, kn), LiftString(Mem, idp, idn)
		put8(Mem, ret, 1)
		hostConsumer(Mem, ret+4, "carol", []string{"jwt"})
		hostString(Mem, ret+20, "kid-1")
		hostHeaders(Mem, ret+28, []Header{{"algorithm", "RS256"}, {"public-key", "-----BEGIN PUBLIC KEY-----\n"}})
	}
	got := ConsumersFindCredential("jwt-auth", "kid-1")
	want := &Credential{
		Consumer:   Consumer{Name: "carol", Groups: []string{"jwt"}},
		ID:         "kid-1",
		Attributes: []Header{{"algorithm", "RS256"}, {"public-key", "-----BEGIN PUBLIC KEY-----\n"}},
	}
	if !reflect.DeepEqual(got, want) || kind != "jwt-auth" || id != "kid-1" {
		t.Fatalf("find-credential:\n got %+v\nwant %+v (asked %q %q)", got, want, kind, id)
	}
	consumersFindCredential = func(kp, kn, idp, idn, ret uint32) {}
	if got := ConsumersFindCredential("jwt-auth", "nobody"); got != nil {
		t.Fatalf("find-credential none: %+v", got)
	}
}

func TestConsumersAuthenticate(t *testing.T) {
	fresh(t)
	var name string
	consumersAuthenticate = func(p, n, ret uint32) { name = LiftString(Mem, p, n) }
	if err := ConsumersAuthenticate("alice"); err != nil || name != "alice" {
		t.Fatalf("authenticate: %v (%q)", err, name)
	}
	for disc, kind := range []ErrorKind{Denied, Invalid, WrongPhase, Unsupported} {
		consumersAuthenticate = func(p, n, ret uint32) {
			put8(Mem, ret, 1)
			put8(Mem, ret+4, uint8(disc))
			hostString(Mem, ret+8, "no consumer ghost")
		}
		err := ConsumersAuthenticate("ghost")
		var e *Error
		if !errors.As(err, &e) || e.Kind != kind || e.Message != "no consumer ghost" {
			t.Fatalf("authenticate error %d: %v", disc, err)
		}
	}
}

func TestConsumersVerifyHMAC(t *testing.T) {
	f := fresh(t)
	var kind, id string
	var alg uint32
	var msg, mac []byte
	consumersVerifyHMAC = func(kp, kn, idp, idn, algorithm, mp, mn, macp, macn, ret uint32) {
		if ret%4 != 0 || len(f.Bytes(ret, OptionConsumerSize)) != OptionConsumerSize {
			t.Errorf("option<consumer> return area: %d", ret)
		}
		kind, id, alg = LiftString(Mem, kp, kn), LiftString(Mem, idp, idn), algorithm
		msg, mac = LiftBytes(Mem, mp, mn), LiftBytes(Mem, macp, macn)
		if string(mac) == "\xde\xad\xbe\xef" {
			put8(Mem, ret, 1)
			hostConsumer(Mem, ret+4, "alice", []string{"admins"})
		}
	}
	before := f.Size()
	got := ConsumersVerifyHMAC("jwt-auth", "alice-iss", 2, []byte("header.payload"), []byte{0xde, 0xad, 0xbe, 0xef})
	if !reflect.DeepEqual(got, &Consumer{Name: "alice", Groups: []string{"admins"}}) || kind != "jwt-auth" ||
		id != "alice-iss" || alg != 2 || string(msg) != "header.payload" {
		t.Fatalf("verify-hmac: %+v (asked %q %q %d %q %x)", got, kind, id, alg, msg, mac)
	}
	if f.Size() != before {
		t.Fatalf("the call kept %d bytes", f.Size()-before)
	}
	// Another MAC: none. An empty message and MAC are lowered as (0, 0), which the host reads as empty.
	if got := ConsumersVerifyHMAC("jwt-auth", "alice-iss", 0, []byte("header.payload"), []byte{0xde, 0xad}); got != nil ||
		!reflect.DeepEqual(mac, []byte{0xde, 0xad}) || alg != 0 {
		t.Fatalf("verify-hmac of another MAC: %+v (asked %x %d)", got, mac, alg)
	}
	consumersVerifyHMAC = func(kp, kn, idp, idn, algorithm, mp, mn, macp, macn, ret uint32) {
		if mp != 0 || mn != 0 || macp != 0 || macn != 0 {
			t.Errorf("empty message and MAC lowered as (%d, %d) and (%d, %d)", mp, mn, macp, macn)
		}
	}
	if got := ConsumersVerifyHMAC("jwt-auth", "no-secret", 1, nil, nil); got != nil {
		t.Fatalf("verify-hmac none: %+v", got)
	}
}
