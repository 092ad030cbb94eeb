// auth-callout: asks an auth upstream about every request (GET <path> with the forwarded headers).
// A 2xx lets the request go on with the user header set from the answer's x-user (or removed); 401
// and 403 go back to the client as JSON; anything else is 503. See examples/filters/README.md.
//
//	config: {upstream: auth, path: /check, forward_headers: [authorization], user_header: x-user, timeout_ms: 1000}
package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"gateway/filter"
	"gateway/filter/http"
	"gateway/filter/log"
)

// AuthCallout is the filter.
type AuthCallout struct {
	filter.Base
	upstream       string
	path           string
	forwardHeaders []string
	userHeader     string
	timeoutMs      uint32
}

func str(key string, v any) (string, error) {
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%s: expected a non-empty string, not %v", key, v)
	}
	return s, nil
}

func jsonError(status uint16, e string) filter.Action {
	return filter.RespondString(status, `{"error":"`+e+`"}`).
		WithHeader("content-type", "application/json")
}

// Init parses the config.
func (a *AuthCallout) Init(config string) error {
	a.path, a.forwardHeaders, a.userHeader, a.timeoutMs = "/check", []string{"authorization"}, "x-user", 1000
	var m map[string]any
	if err := json.Unmarshal([]byte(config), &m); err != nil || m == nil {
		return fmt.Errorf("expected a map with at least `upstream`")
	}
	var err error
	for k, v := range m {
		switch k {
		case "upstream":
			a.upstream, err = str(k, v)
		case "path":
			if a.path, err = str(k, v); err == nil && !strings.HasPrefix(a.path, "/") {
				err = fmt.Errorf("path: `%s` must start with `/`", a.path)
			}
		case "forward_headers":
			items, ok := v.([]any)
			if !ok {
				return fmt.Errorf("forward_headers: expected a list of header names")
			}
			a.forwardHeaders = a.forwardHeaders[:0]
			for _, item := range items {
				s, e := str("forward_headers", item)
				if e != nil {
					return e
				}
				a.forwardHeaders = append(a.forwardHeaders, strings.ToLower(s))
			}
		case "user_header":
			var s string
			s, err = str(k, v)
			a.userHeader = strings.ToLower(s)
		case "timeout_ms":
			n, ok := v.(float64)
			if !ok || n <= 0 || n != float64(uint32(n)) {
				return fmt.Errorf("timeout_ms: expected a positive number, not %v", v)
			}
			a.timeoutMs = uint32(n)
		default:
			err = fmt.Errorf("unknown key `%s` (expected upstream, path, forward_headers, user_header, timeout_ms)", k)
		}
		if err != nil {
			return err
		}
	}
	if a.upstream == "" {
		return fmt.Errorf("upstream: required (the upstream to ask)")
	}
	return nil
}

// OnRequest asks the auth upstream.
func (a *AuthCallout) OnRequest(req *filter.Request) filter.Action {
	check := http.NewRequest("GET", a.path).Timeout(a.timeoutMs)
	for _, name := range a.forwardHeaders {
		for _, value := range req.HeaderAll(name) {
			check.Header(name, value)
		}
	}
	resp, err := http.Send(a.upstream, check)
	if err != nil {
		log.Warn(fmt.Sprintf("auth-callout: %s: %v", a.upstream, err))
		return jsonError(503, "auth unavailable")
	}
	switch {
	case resp.Status >= 200 && resp.Status <= 299:
		if user, ok := resp.Header("x-user"); ok {
			err = req.SetHeader(a.userHeader, user)
		} else {
			err = req.RemoveHeader(a.userHeader)
		}
		if err != nil {
			log.Warn(fmt.Sprintf("auth-callout: cannot set %s: %v", a.userHeader, err))
			return jsonError(503, "auth unavailable")
		}
		return filter.Continue()
	case resp.Status == 401:
		return jsonError(401, "unauthorized")
	case resp.Status == 403:
		return jsonError(403, "forbidden")
	}
	log.Warn(fmt.Sprintf("auth-callout: %s answered %d", a.upstream, resp.Status))
	return jsonError(503, "auth unavailable")
}

func init() { filter.Register(&AuthCallout{}) }

func main() {}
