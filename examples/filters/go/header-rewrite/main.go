// header-rewrite: sets, appends and removes request headers (in OnRequest) and response headers
// (in OnResponse), as the route's config says. See examples/filters/README.md.
//
//	config:
//	  request:  {set: {x-env: prod}, add: {x-tag: a}, remove: [x-debug]}
//	  response: {set: {x-frame-options: DENY}, remove: [server]}
package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"gateway/filter"
	"gateway/filter/log"
)

// edits of one direction, applied in the order remove, set, add.
type edits struct {
	set, add []filter.Header
	remove   []string
}

// HeaderRewrite is the filter.
type HeaderRewrite struct {
	filter.Base
	request, response edits
}

// headerName checks a header name is an RFC 9110 token and lower-cases it.
func headerName(field, name string) (string, error) {
	ok := name != ""
	for i := 0; i < len(name) && ok; i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
	}
	if !ok {
		return "", fmt.Errorf("%s: `%s` is not a valid header name", field, name)
	}
	return strings.ToLower(name), nil
}

func pairs(field string, v any) ([]filter.Header, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a map of header names to strings", field)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]filter.Header, 0, len(m))
	for _, k := range keys {
		f := field + "." + k
		name, err := headerName(f, k)
		if err != nil {
			return nil, err
		}
		value, ok := m[k].(string)
		if !ok {
			return nil, fmt.Errorf("%s: the value must be a string, not %v", f, m[k])
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("%s: the value must not contain CR, LF or NUL", f)
		}
		out = append(out, filter.Header{Name: name, Value: value})
	}
	return out, nil
}

func names(field string, v any) ([]string, error) {
	items, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a list of header names", field)
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("%s: expected a header name, not %v", f, item)
		}
		name, err := headerName(f, s)
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

func parseEdits(field string, v any) (edits, error) {
	var e edits
	m, ok := v.(map[string]any)
	if !ok {
		return e, fmt.Errorf("%s: expected a map with set, add and remove", field)
	}
	var err error
	for k, v := range m {
		f := field + "." + k
		switch k {
		case "set":
			e.set, err = pairs(f, v)
		case "add":
			e.add, err = pairs(f, v)
		case "remove":
			e.remove, err = names(f, v)
		default:
			err = fmt.Errorf("%s: unknown key `%s` (expected set, add, remove)", field, k)
		}
		if err != nil {
			return e, err
		}
	}
	return e, nil
}

// Init parses the config.
func (h *HeaderRewrite) Init(config string) error {
	if strings.TrimSpace(config) == "" || config == "null" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(config), &m); err != nil || m == nil {
		return fmt.Errorf("expected a map with `request` and `response` sections")
	}
	var err error
	for k, v := range m {
		switch k {
		case "request":
			h.request, err = parseEdits("request", v)
		case "response":
			h.response, err = parseEdits("response", v)
		default:
			err = fmt.Errorf("unknown key `%s` (expected request, response)", k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// headers is what Request and Response share for this filter.
type headers interface {
	SetHeader(name, value string) error
	AppendHeader(name, value string) error
	RemoveHeader(name string) error
}

func (e *edits) apply(h headers) {
	report := func(err error) {
		if err != nil {
			log.Warn("header-rewrite: " + err.Error())
		}
	}
	for _, n := range e.remove {
		report(h.RemoveHeader(n))
	}
	for _, p := range e.set {
		report(h.SetHeader(p.Name, p.Value))
	}
	for _, p := range e.add {
		report(h.AppendHeader(p.Name, p.Value))
	}
}

// OnRequest applies the request edits.
func (h *HeaderRewrite) OnRequest(req *filter.Request) filter.Action {
	h.request.apply(req)
	return filter.Continue()
}

// OnResponse applies the response edits.
func (h *HeaderRewrite) OnResponse(resp *filter.Response) filter.Action {
	h.response.apply(resp)
	return filter.Continue()
}

func init() { filter.Register(&HeaderRewrite{}) }

func main() {}
