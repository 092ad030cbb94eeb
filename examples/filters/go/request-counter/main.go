// request-counter: counts requests in the shared store (kv increment by 1 on `key`, default the
// route's name) and puts the request's number on its response as `x-request-count`; adds 1 to the
// plugin counter `requests_total`. See examples/filters/README.md.
//
//	config: {key: hits}
package main

import (
	"fmt"
	"strconv"

	"gateway/filter"
	"gateway/filter/facts"
	"gateway/filter/kv"
	"gateway/filter/log"
	"gateway/filter/metrics"
)

// RequestCounter is the filter.
type RequestCounter struct {
	filter.Base
	key string
	// count is this request's number (the instance serves one request at a time).
	count    int64
	hasCount bool
}

// Init reads the config with the SDK's typed config: a field the type does not have, or a key that
// is not a string, is refused at the YAML line where it is written.
func (c *RequestCounter) Init(config string) error {
	var cfg struct {
		Key *string `json:"key"`
	}
	if err := filter.ParseConfig(config, &cfg); err != nil {
		return err
	}
	if cfg.Key != nil && *cfg.Key == "" {
		return fmt.Errorf("key: expected a non-empty string")
	}
	if cfg.Key != nil {
		c.key = *cfg.Key
	}
	return nil
}

// OnRequest counts.
func (c *RequestCounter) OnRequest(*filter.Request) filter.Action {
	c.hasCount = false
	key := c.key
	if key == "" {
		key = facts.Get().Route
	}
	if n, err := kv.Increment(key, 1); err != nil {
		log.Warn(fmt.Sprintf("request-counter: cannot count `%s`: %v", key, err))
	} else {
		c.count, c.hasCount = n, true
	}
	if err := metrics.CounterAdd("requests_total", 1); err != nil {
		log.Warn("request-counter: requests_total: " + err.Error())
	}
	return filter.Continue()
}

// OnResponse stamps the number.
func (c *RequestCounter) OnResponse(resp *filter.Response) filter.Action {
	if c.hasCount {
		c.hasCount = false
		if err := resp.SetHeader("x-request-count", strconv.FormatInt(c.count, 10)); err != nil {
			log.Warn("request-counter: " + err.Error())
		}
	}
	return filter.Continue()
}

func init() { filter.Register(&RequestCounter{}) }

func main() {}
