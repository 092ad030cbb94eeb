// A template Go filter: copy this directory, rename the module, change the methods.
//
// It answers 403 to requests under /private, tells the backend it passed (`x-filter: go`), and
// adds `x-hello: <greeting>` to responses, where the greeting is the route's config (a string;
// default "world").
package main

import (
	"strings"

	"gateway/filter"
	"gateway/filter/log"
)

// Hello is the filter. Embedding filter.Base gives a no-op for every method not written here.
type Hello struct {
	filter.Base
	greeting string
}

// Init takes the route's config: the greeting.
func (h *Hello) Init(config string) error {
	h.greeting = strings.TrimSpace(config)
	if h.greeting == "" {
		h.greeting = "world"
	}
	if strings.ContainsAny(h.greeting, "\r\n") {
		return &filter.Error{Kind: filter.Invalid, Message: "the greeting must be one line"}
	}
	// Init runs in every new instance (with instance_mode: fresh, for every request): debug, so
	// the log is not a line per request.
	log.Debug("hello filter configured with greeting " + h.greeting)
	return nil
}

// OnRequest denies /private and marks the request.
func (h *Hello) OnRequest(req *filter.Request) filter.Action {
	if strings.HasPrefix(req.Path(), "/private") {
		return filter.RespondString(403, "forbidden\n").WithHeader("content-type", "text/plain")
	}
	if err := req.SetHeader("x-filter", "go"); err != nil {
		log.Warn("cannot set x-filter: " + err.Error())
	}
	return filter.Continue()
}

// OnResponse adds the greeting.
func (h *Hello) OnResponse(resp *filter.Response) filter.Action {
	_ = resp.SetHeader("x-hello", h.greeting)
	return filter.Continue()
}

func init() { filter.Register(&Hello{}) }

// main is not called: the gateway calls the filter's exports. A Go filter needs it to build.
func main() {}
