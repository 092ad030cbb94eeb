// Command kitchen is the Go SDK's end-to-end fixture (tests/e2e/go_sdk.rs): every capability of the
// SDK, chosen per request by the `x-test` request header, answering what it saw so the test can
// check it against the gateway. It is not an example; see examples/go-filter for one.
package main

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"gateway/filter"
	"gateway/filter/clock"
	"gateway/filter/facts"
	"gateway/filter/http"
	"gateway/filter/kv"
	"gateway/filter/log"
	"gateway/filter/metrics"
	"gateway/filter/random"
)

// Kitchen is the filter.
type Kitchen struct {
	filter.Base
	test       string
	wrongPhase string
	garbage    [][]byte
	// served counts the requests this instance saw (one instance serves many in reuse mode).
	served int
}

// Init rejects the config "reject" and panics on "panic" (a trap in init).
func (k *Kitchen) Init(config string) error {
	switch config {
	case "reject":
		return errors.New("kitchen: rejected as asked")
	case "panic":
		panic("kitchen: panic in Init as asked")
	}
	return nil
}

// Options asks for the request body in chunks (to see and change it).
func (k *Kitchen) Options() filter.Options { return filter.Options{RequestBody: filter.Chunks} }

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
		return answer(errs, fmt.Sprintf("kv ok n=%d", n))
	case "kv-denied":
		_, err := kv.Get("k")
		return answer(nil, fmt.Sprint(err))
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

// OnRequestBody upper-cases the body (chunk by chunk) and tries a header change (wrong phase).
func (k *Kitchen) OnRequestBody(req *filter.Request, _ bool) filter.Action {
	body, ok := req.Body()
	if !ok {
		return filter.RespondString(500, "kitchen: no body in the body phase\n")
	}
	if err := req.SetBody([]byte(strings.ToUpper(string(body)))); err != nil {
		return filter.RespondString(500, "kitchen: set body: "+err.Error()+"\n")
	}
	if err := req.SetHeader("x-late", "1"); errors.Is(err, filter.ErrWrongPhase) {
		k.wrongPhase = "wrong-phase"
	}
	return filter.Continue()
}

// OnResponse reports, per test, on the response.
func (k *Kitchen) OnResponse(resp *filter.Response) filter.Action {
	if k.wrongPhase != "" {
		_ = resp.SetHeader("x-body-phase-header", k.wrongPhase)
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

func init() { filter.Register(&Kitchen{}) }

func main() {}
