// Command kitchen is the Go SDK's end-to-end fixture (tests/e2e/go_sdk.rs): every capability of the
// SDK, chosen per request by the `x-test` request header, answering what it saw so the test can
// check it against the gateway. It is not an example; see examples/go-filter for one.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"gateway/filter"
	"gateway/filter/clock"
	"gateway/filter/consumers"
	"gateway/filter/facts"
	"gateway/filter/http"
	"gateway/filter/kv"
	"gateway/filter/log"
	"gateway/filter/metrics"
	"gateway/filter/random"
	"gateway/filter/trace"
)

// Kitchen is the filter.
type Kitchen struct {
	filter.Base
	// role is what the config made of this instance: "" (the tests chosen by `x-test`),
	// "authenticate" (only authenticates requests, see authenticate) or "report-consumer" (only
	// tells who the request is, see report).
	role string
	// anonymous is the consumer of requests without credentials (config "anonymous=NAME").
	anonymous  string
	test       string
	wrongPhase string
	garbage    [][]byte
	// served counts the requests this instance saw (one instance serves many in reuse mode).
	served int
}

// Init rejects the config "reject" and panics on "panic" (a trap in init). The word "authenticate"
// or "report-consumer" is the instance's role; "anonymous=NAME" names an authenticator's anonymous
// consumer (NAME must be a consumer of the config: consumers.Get in Init).
func (k *Kitchen) Init(config string) error {
	switch config {
	case "reject":
		return errors.New("kitchen: rejected as asked")
	case "panic":
		panic("kitchen: panic in Init as asked")
	}
	for _, word := range strings.Fields(config) {
		if word == "authenticate" || word == "report-consumer" {
			k.role = word
		} else if name, ok := strings.CutPrefix(word, "anonymous="); ok {
			if consumers.Get(name) == nil {
				return fmt.Errorf("kitchen: anonymous consumer %s is not in the config", name)
			}
			k.anonymous = name
		}
	}
	return nil
}

// Options asks for the request body in chunks (to see and change it); the roles ask for no bodies.
func (k *Kitchen) Options() filter.Options {
	if k.role != "" {
		return filter.Options{}
	}
	return filter.Options{RequestBody: filter.Chunks}
}

// authenticate is the authenticator's OnRequest: the consumer of the `x-api-key` header (key-auth)
// or of Basic credentials (basic-auth), else the anonymous consumer if configured; unknown
// credentials are a 401.
func (k *Kitchen) authenticate(req *filter.Request) filter.Action {
	name := k.anonymous
	if key, ok := req.Header("x-api-key"); ok {
		c := consumers.FindByKey("key-auth", key)
		if c == nil {
			return filter.RespondString(401, "kitchen: unknown key\n")
		}
		name = c.Name
	} else if auth, ok := req.Header("authorization"); ok {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		user, password, found := strings.Cut(string(raw), ":")
		var c *consumers.Consumer
		if err == nil && found {
			c = consumers.CheckSecret("basic-auth", user, password)
		}
		if c == nil {
			return filter.RespondString(401, "kitchen: bad credentials\n")
		}
		name = c.Name
	}
	if name != "" {
		if err := consumers.Authenticate(name); err != nil {
			return filter.RespondString(500, "kitchen: authenticate: "+err.Error()+"\n")
		}
	}
	return filter.Continue()
}

// report is the consumer reporter's OnRequest: it tells the upstream the consumer an earlier filter
// authenticated the request as (x-go-consumer, "none" when none) and its groups.
func report(req *filter.Request) filter.Action {
	name, groups := "none", ""
	if c := consumers.Current(); c != nil {
		name, groups = c.Name, strings.Join(c.Groups, ",")
	}
	var errs []string
	check(&errs, "set x-go-consumer", req.SetHeader("x-go-consumer", name) == nil)
	check(&errs, "set x-go-consumer-groups", req.SetHeader("x-go-consumer-groups", groups) == nil)
	if len(errs) > 0 {
		return answer(errs, "")
	}
	return filter.Continue()
}

// reportLate is the consumer reporter's OnResponse: the consumer is still known in the response
// phase (x-go-consumer-seen), where authenticating is a wrong phase (x-go-late-authenticate).
func reportLate(resp *filter.Response) filter.Action {
	name := "none"
	if c := consumers.Current(); c != nil {
		name = c.Name
	}
	err := consumers.Authenticate("alice")
	_ = resp.SetHeader("x-go-consumer-seen", name)
	_ = resp.SetHeader("x-go-late-authenticate", fmt.Sprint(errors.Is(err, filter.ErrWrongPhase)))
	return filter.Continue()
}

func check(errs *[]string, what string, ok bool) {
	if !ok {
		*errs = append(*errs, what)
	}
}

func answer(errs []string, body string) filter.Action {
	if len(errs) > 0 {
		return filter.RespondString(500, "kitchen: failed: "+strings.Join(errs, "; ")+"\n")
	}
	return filter.RespondString(200, body)
}

// OnRequest runs the test the request asks for.
func (k *Kitchen) OnRequest(req *filter.Request) filter.Action {
	k.served++
	k.test, _ = req.Header("x-test")
	k.wrongPhase = ""
	// WIT 0.1.4: the value lands on this call's span when the request is traced (else nothing).
	if v, ok := req.Header("x-trace-attr"); ok {
		trace.SetAttribute("fixture.attr", v)
		trace.AddEvent("fixture.event", trace.Attr{Key: "fixture.value", Value: v})
	}
	switch k.role {
	case "authenticate":
		k.test = ""
		return k.authenticate(req)
	case "report-consumer":
		k.test = ""
		return report(req)
	}
	var errs []string
	switch k.test {
	case "panic":
		panic("kitchen: panic in OnRequest as asked")
	case "facts":
		f := facts.Get()
		tls := "none"
		if f.TLS != nil {
			tls = f.TLS.Version
		}
		return filter.RespondString(200, fmt.Sprintf("route=%s upstream=%s scheme=%s protocol=%s id=%d client=%s local=%s tls=%s",
			f.Route, f.Upstream, f.Scheme, f.Protocol, f.RequestID, f.ClientAddress, f.LocalAddress, tls))
	case "kv":
		v1, err := kv.Set("k", []byte("one"), 0)
		check(&errs, "set: "+fmt.Sprint(err), err == nil && v1 > 0)
		e, err := kv.Get("k")
		check(&errs, "get", err == nil && e != nil && string(e.Value) == "one" && e.Version == v1)
		_, err = kv.CompareAndSwap("k", v1+1000, []byte("x"), 0)
		check(&errs, "cas mismatch: "+fmt.Sprint(err), errors.Is(err, filter.ErrVersionMismatch))
		v2, err := kv.CompareAndSwap("k", v1, []byte("two"), 60_000_000_000)
		check(&errs, "cas: "+fmt.Sprint(err), err == nil && v2 > v1)
		_, err = kv.Increment("k", 1)
		check(&errs, "increment text: "+fmt.Sprint(err), errors.Is(err, filter.ErrNotANumber))
		n, err := kv.Increment("n", -5)
		check(&errs, "increment", err == nil && n <= -5)
		check(&errs, "delete", kv.Delete("k") == nil)
		e, err = kv.Get("k")
		check(&errs, "get deleted", err == nil && e == nil)
		_, err = kv.Set(strings.Repeat("k", 2000), nil, 0)
		check(&errs, "invalid key: "+fmt.Sprint(err), errors.Is(err, filter.ErrInvalid))
		b, err := kv.Backend()
		check(&errs, "backend: "+fmt.Sprint(err), err == nil)
		return answer(errs, fmt.Sprintf("kv ok n=%d backend=%v", n, b))
	case "kv-ttl":
		// "window" is created with a TTL of 2 s, which the second call (asking for an hour) keeps;
		// "lasting" is created without one, which a TTL of 1 ms on an existing key does not add.
		w1, err := kv.IncrementWithTTL("window", 1, 2*time.Second)
		check(&errs, "increment with ttl: "+fmt.Sprint(err), err == nil)
		w2, err := kv.IncrementWithTTL("window", 1, time.Hour)
		check(&errs, "increment with ttl again: "+fmt.Sprint(err), err == nil)
		_, err = kv.Increment("lasting", 1)
		check(&errs, "increment: "+fmt.Sprint(err), err == nil)
		l, err := kv.IncrementWithTTL("lasting", 1, time.Millisecond)
		check(&errs, "increment with ttl of an existing key: "+fmt.Sprint(err), err == nil)
		_, err = kv.Set("text", []byte("x"), 0)
		check(&errs, "set: "+fmt.Sprint(err), err == nil)
		_, err = kv.IncrementWithTTL("text", 1, time.Second)
		check(&errs, "increment with ttl of text: "+fmt.Sprint(err), errors.Is(err, filter.ErrNotANumber))
		return answer(errs, fmt.Sprintf("kv-ttl window=%d,%d lasting=%d", w1, w2, l))
	case "kv-probe":
		// What a store that may be down answers: the backend (known without asking it) and one
		// increment, whose error is reported rather than failing the request.
		b, err := kv.Backend()
		check(&errs, "backend: "+fmt.Sprint(err), err == nil)
		n, err := kv.Increment("probe", 1)
		return answer(errs, fmt.Sprintf("backend=%v probe=%d unavailable=%v err=%v", b, n, errors.Is(err, filter.ErrUnavailable), err))
	case "kv-denied":
		_, err := kv.Get("k")
		_, berr := kv.Backend()
		check(&errs, "backend without a namespace: "+fmt.Sprint(berr), errors.Is(berr, filter.ErrDenied))
		return answer(errs, fmt.Sprint(err))
	case "metrics":
		check(&errs, "counter", metrics.CounterAdd("kitchen_total", 3) == nil)
		check(&errs, "gauge set", metrics.GaugeSet("kitchen_level", 10) == nil)
		check(&errs, "gauge add", metrics.GaugeAdd("kitchen_level", -4) == nil)
		check(&errs, "histogram", metrics.HistogramRecord("kitchen_ms", 7) == nil)
		err := metrics.GaugeSet("kitchen_total", 1)
		check(&errs, "a counter used as a gauge: "+fmt.Sprint(err), errors.Is(err, filter.ErrInvalid))
		return answer(errs, "metrics ok")
	case "misc":
		b := random.Bytes(16)
		check(&errs, "random bytes", len(b) == 16)
		check(&errs, "random u64", random.Uint64() != random.Uint64())
		t0 := clock.MonotonicNs()
		check(&errs, "monotonic", clock.MonotonicNs() >= t0)
		now := clock.NowMs()
		check(&errs, "now", now > 1_600_000_000_000)
		check(&errs, "log enabled", log.Enabled(log.LevelError))
		log.Info("kitchen: misc")
		return answer(errs, fmt.Sprintf("misc ok now=%d", now))
	case "http":
		resp, err := http.Send("backend", http.NewRequest("POST", "/called?via=kitchen").
			Header("x-called", "yes").WithBody([]byte("ping")).Timeout(2000))
		if err != nil {
			return answer([]string{"send: " + err.Error()}, "")
		}
		up, _ := resp.Header("x-upstream")
		return answer(nil, fmt.Sprintf("status=%d upstream=%s body=%s", resp.Status, up, resp.Body))
	case "http-denied":
		_, err := http.Get("not-granted", "/")
		return answer(nil, fmt.Sprintf("denied=%v %v", errors.Is(err, filter.ErrDenied), err))
	case "request":
		q, hasQ := req.Query()
		check(&errs, "method", req.Method() == "GET")
		check(&errs, "path", req.Path() == "/kitchen/request")
		check(&errs, "query", hasQ && q == "a=1&b=2")
		check(&errs, "header all", strings.Join(req.HeaderAll("x-multi"), ",") == "1,2")
		n := 0
		for _, h := range req.Headers() {
			if h.Name == "x-multi" {
				n++
			}
		}
		check(&errs, "headers", n == 2)
		_, hasBody := req.Body()
		check(&errs, "no body in the header phase", !hasBody)
		check(&errs, "append", req.AppendHeader("x-multi", "3") == nil)
		check(&errs, "remove", req.RemoveHeader("x-test") == nil)
		check(&errs, "set path", req.SetPathWithQuery("/rewritten?x=1") == nil)
		err := req.SetHeader("bad name", "v")
		check(&errs, "invalid header: "+fmt.Sprint(err), errors.Is(err, filter.ErrInvalid))
		err = req.SetBody([]byte("no"))
		check(&errs, "set body in the header phase: "+fmt.Sprint(err), errors.Is(err, filter.ErrWrongPhase))
		if len(errs) > 0 {
			return answer(errs, "")
		}
	case "compose":
		return compose(req)
	case "send-all-limit":
		return sendAllLimit()
	case "consumers":
		return k.consumers(req)
	case "consumers-ungranted":
		return ungranted(req)
	case "churn":
		// Garbage for the collector: about 256 KiB per request, kept only until the next one.
		k.garbage = k.garbage[:0]
		for i := 0; i < 64; i++ {
			k.garbage = append(k.garbage, make([]byte, 4096))
		}
		_ = req.Headers()
	}
	return filter.Continue()
}

// compose is WIT 0.1.3 from Go: the route's path template parameters, two upstreams called at once
// with http.SendAll (each `/delay/{x-delay}`; one not granted and one timing out in the same
// call), and the method changed. It tells the upstream what it saw in request headers: x-params
// (name=value,...), x-id and x-has-id (PathParam), x-send-all (each result: status and x-upstream,
// or the error kind) and x-send-all-ms (how long SendAll took, measured here).
func compose(req *filter.Request) filter.Action {
	var errs []string
	var params []string
	for _, p := range req.PathParams() {
		params = append(params, p.Name+"="+p.Value)
	}
	id, hasID := req.PathParam("id")
	_, hasNone := req.PathParam("none")
	check(&errs, "a parameter the template lacks", !hasNone)
	delay, _ := req.Header("x-delay")
	started := clock.MonotonicNs()
	results := http.SendAll([]http.Call{
		{Upstream: "backend", Request: http.NewRequest("GET", "/delay/"+delay+"?user="+id)},
		{Upstream: "second", Request: http.NewRequest("POST", "/delay/"+delay).WithBody([]byte(id)).Header("x-from", "kitchen")},
		{Upstream: "not-granted", Request: http.NewRequest("GET", "/")},
		{Upstream: "backend", Request: http.NewRequest("GET", "/slow").Timeout(100)},
	})
	took := (clock.MonotonicNs() - started) / 1_000_000
	var seen []string
	for _, r := range results {
		var e *filter.Error
		if errors.As(r.Err, &e) {
			seen = append(seen, e.Kind.String())
			continue
		}
		up, _ := r.Response.Header("x-upstream")
		seen = append(seen, fmt.Sprintf("%d:%s:%s", r.Response.Status, up, strings.TrimSpace(string(r.Response.Body))))
	}
	err := req.SetMethod("BAD METHOD")
	check(&errs, "an invalid method: "+fmt.Sprint(err), errors.Is(err, filter.ErrInvalid))
	check(&errs, "set method", req.SetMethod("PATCH") == nil)
	check(&errs, "the method after the change", req.Method() == "PATCH")
	check(&errs, "x-params", req.SetHeader("x-params", strings.Join(params, ",")) == nil)
	check(&errs, "x-id", req.SetHeader("x-id", id) == nil)
	check(&errs, "x-has-id", req.SetHeader("x-has-id", fmt.Sprint(hasID)) == nil)
	check(&errs, "x-send-all", req.SetHeader("x-send-all", strings.Join(seen, " ")) == nil)
	check(&errs, "x-send-all-ms", req.SetHeader("x-send-all-ms", fmt.Sprint(took)) == nil)
	if len(errs) > 0 {
		return answer(errs, "")
	}
	return filter.Continue()
}

// sendAllLimit sends http.MaxSendAll requests in one SendAll (all answered, each with its own
// answer: the mock echoes the path), then one more than that (none sent: each gets
// ErrBadRequest), and answers what came back.
func sendAllLimit() filter.Action {
	calls := make([]http.Call, http.MaxSendAll+1)
	for i := range calls {
		calls[i] = http.Call{Upstream: "backend", Request: http.NewRequest("GET", fmt.Sprintf("/limit/%d", i))}
	}
	ok := 0
	for i, r := range http.SendAll(calls[:http.MaxSendAll]) {
		if r.Err == nil && r.Response.Status == 200 && strings.HasSuffix(string(r.Response.Body), fmt.Sprintf(" /limit/%d\n", i)) {
			ok++
		}
	}
	over := http.SendAll(calls)
	bad, why := 0, ""
	for _, r := range over {
		if errors.Is(r.Err, filter.ErrBadRequest) {
			bad++
			why = r.Err.Error()
		}
	}
	return filter.RespondString(200, fmt.Sprintf("in-order=%d/%d bad-request=%d/%d %s", ok, http.MaxSendAll, bad, len(over), why))
}

// OnRequestBody upper-cases the body (chunk by chunk) and tries a header and a method change (wrong
// phase for both).
func (k *Kitchen) OnRequestBody(req *filter.Request, _ bool) filter.Action {
	body, ok := req.Body()
	if !ok {
		return filter.RespondString(500, "kitchen: no body in the body phase\n")
	}
	if err := req.SetBody([]byte(strings.ToUpper(string(body)))); err != nil {
		return filter.RespondString(500, "kitchen: set body: "+err.Error()+"\n")
	}
	if errors.Is(req.SetHeader("x-late", "1"), filter.ErrWrongPhase) &&
		errors.Is(req.SetMethod("PUT"), filter.ErrWrongPhase) {
		k.wrongPhase = "wrong-phase"
	}
	return filter.Continue()
}

// OnResponse reports, per test, on the response.
func (k *Kitchen) OnResponse(resp *filter.Response) filter.Action {
	if k.wrongPhase != "" {
		_ = resp.SetHeader("x-body-phase-header", k.wrongPhase)
	}
	if k.role == "report-consumer" {
		return reportLate(resp)
	}
	switch k.test {
	case "status":
		if err := resp.SetStatus(299); err != nil {
			return filter.RespondString(500, "set status: "+err.Error())
		}
		_ = resp.AppendHeader("x-was", fmt.Sprint(resp.Status()))
		_ = resp.RemoveHeader("x-upstream")
	case "churn":
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		_ = resp.SetHeader("x-go-sys", fmt.Sprint(m.Sys))
		_ = resp.SetHeader("x-go-heap-inuse", fmt.Sprint(m.HeapInuse))
		_ = resp.SetHeader("x-go-gc", fmt.Sprint(m.NumGC))
		_ = resp.SetHeader("x-served", fmt.Sprint(k.served))
	}
	return filter.Continue()
}

// macs are the MACs of "header.payload" a request brings in x-mac-sha256, x-mac-sha384 and
// x-mac-sha512 (hex; computed by the test, since the filter cannot make one with a secret).
func macs(req *filter.Request) map[consumers.HMACAlgorithm][]byte {
	out := map[consumers.HMACAlgorithm][]byte{}
	for _, alg := range []consumers.HMACAlgorithm{consumers.SHA256, consumers.SHA384, consumers.SHA512} {
		h, _ := req.Header("x-mac-" + alg.String())
		out[alg], _ = hex.DecodeString(h)
	}
	return out
}

// nameOf is c's name, "none" for nil.
func nameOf(c *consumers.Consumer) string {
	if c == nil {
		return "none"
	}
	return c.Name
}

// consumers drives every consumers call against the consumers of go_sdk.rs's config (alice with a
// key, a password and an HS256 secret; bob with an ES256 public key) and answers whom the MACs the
// request brings (see macs) verify as.
func (k *Kitchen) consumers(req *filter.Request) filter.Action {
	var errs []string
	check(&errs, "no consumer yet", consumers.Current() == nil)
	alice := consumers.Get("alice")
	check(&errs, "get alice", alice != nil && alice.Name == "alice" && strings.Join(alice.Groups, ",") == "admins,ops")
	check(&errs, "get ghost", consumers.Get("ghost") == nil)
	c := consumers.FindByKey("key-auth", "k-alice")
	check(&errs, "find by key", c != nil && c.Name == "alice")
	check(&errs, "find by a wrong key", consumers.FindByKey("key-auth", "k-nobody") == nil)
	c = consumers.CheckSecret("basic-auth", "alice", "pw")
	check(&errs, "check secret", c != nil && c.Name == "alice")
	check(&errs, "check a wrong secret", consumers.CheckSecret("basic-auth", "alice", "pw2") == nil)
	check(&errs, "check an unknown user", consumers.CheckSecret("basic-auth", "mallory", "pw") == nil)
	cred := consumers.FindCredential("jwt-auth", "alice-iss")
	check(&errs, "credential alice-iss", cred != nil)
	if cred != nil {
		alg, _ := cred.Attribute("algorithm")
		_, hasSecret := cred.Attribute("secret")
		check(&errs, fmt.Sprintf("credential alice-iss: %+v", *cred),
			cred.Consumer.Name == "alice" && cred.ID == "alice-iss" && alg == "HS256" && !hasSecret)
	}
	cred = consumers.FindCredential("jwt-auth", "kid-1")
	check(&errs, "credential kid-1", cred != nil)
	if cred != nil {
		alg, _ := cred.Attribute("algorithm")
		pem, _ := cred.Attribute("public-key")
		check(&errs, fmt.Sprintf("credential kid-1: %+v", *cred), cred.Consumer.Name == "bob" && alg == "ES256" &&
			strings.HasPrefix(pem, "-----BEGIN PUBLIC KEY-----"))
	}
	check(&errs, "no credential", consumers.FindCredential("jwt-auth", "nobody") == nil)
	msg := []byte("header.payload")
	given := macs(req)
	var verified []string
	for _, alg := range []consumers.HMACAlgorithm{consumers.SHA256, consumers.SHA384, consumers.SHA512} {
		mac := given[alg]
		verified = append(verified, alg.String()+"="+nameOf(consumers.VerifyHMAC("jwt-auth", "alice-iss", alg, msg, mac)))
		if len(mac) == 0 {
			continue
		}
		// The same MAC with its last bit flipped, or of another message, is no one's.
		wrong := append([]byte(nil), mac...)
		wrong[len(wrong)-1] ^= 1
		check(&errs, "a wrong "+alg.String()+" MAC", consumers.VerifyHMAC("jwt-auth", "alice-iss", alg, msg, wrong) == nil)
		check(&errs, "another message's "+alg.String()+" MAC",
			consumers.VerifyHMAC("jwt-auth", "alice-iss", alg, []byte("header.payload2"), mac) == nil)
	}
	mac256 := given[consumers.SHA256]
	check(&errs, "a sha256 MAC as sha512", consumers.VerifyHMAC("jwt-auth", "alice-iss", consumers.SHA512, msg, mac256) == nil)
	check(&errs, "no MAC", consumers.VerifyHMAC("jwt-auth", "alice-iss", consumers.SHA256, msg, nil) == nil)
	check(&errs, "a MAC of a credential without a secret",
		consumers.VerifyHMAC("jwt-auth", "kid-1", consumers.SHA256, msg, mac256) == nil)
	check(&errs, "a MAC of no credential", consumers.VerifyHMAC("jwt-auth", "nobody", consumers.SHA256, msg, mac256) == nil)
	err := consumers.Authenticate("ghost")
	check(&errs, "authenticate ghost: "+fmt.Sprint(err), errors.Is(err, filter.ErrInvalid))
	check(&errs, "still no consumer", consumers.Current() == nil)
	err = consumers.Authenticate("bob")
	c = consumers.Current()
	check(&errs, "authenticate bob: "+fmt.Sprint(err), err == nil && c != nil && c.Name == "bob" && len(c.Groups) == 0)
	return answer(errs, "consumers ok "+strings.Join(verified, " "))
}

// ungranted answers what a filter without `capabilities.consumers` gets from each consumers call
// (alice's key, password, jwt-auth credential and the request's sha256 MAC; then authenticating
// as her): only Get and Current work.
func ungranted(req *filter.Request) filter.Action {
	authenticate := "ok"
	if err := consumers.Authenticate("alice"); errors.Is(err, filter.ErrDenied) {
		authenticate = "denied"
	} else if err != nil {
		authenticate = err.Error()
	}
	credential := "none"
	if c := consumers.FindCredential("jwt-auth", "alice-iss"); c != nil {
		credential = c.Consumer.Name
	}
	return filter.RespondString(200, fmt.Sprintf(
		"find-by-key=%s check-secret=%s credential=%s verify-hmac=%s get=%s authenticate=%s current=%s",
		nameOf(consumers.FindByKey("key-auth", "k-alice")),
		nameOf(consumers.CheckSecret("basic-auth", "alice", "pw")),
		credential,
		nameOf(consumers.VerifyHMAC("jwt-auth", "alice-iss", consumers.SHA256, []byte("header.payload"), macs(req)[consumers.SHA256])),
		nameOf(consumers.Get("alice")),
		authenticate,
		nameOf(consumers.Current()),
	))
}

func init() { filter.Register(&Kitchen{}) }

func main() {}
