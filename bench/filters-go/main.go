// The benchmark's no-op Go filter: a request-headers handler that continues (the SDK declares that
// one phase, WIT 0.1.5), the Go counterpart of bench/filters-wit. Built by bench/run.py with
// `cargo xtask go-filter build bench/filters-go -o target/bench-go/bench_filters_go.wasm`.
package main

import "gateway/filter"

// Noop continues in the one phase it has.
type Noop struct{ filter.Base }

// OnRequest continues.
func (Noop) OnRequest(*filter.Request) filter.Action { return filter.Continue() }

func init() { filter.Register(&Noop{}) }

// main is not called: the gateway calls the filter's exports.
func main() {}
