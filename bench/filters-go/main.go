// The benchmark's no-op Go filter: every method is filter.Base's (continue, no body phases), the
// Go counterpart of bench/filters-wit. Built by bench/run.py with
// `cargo xtask go-filter build bench/filters-go -o target/bench-go/bench_filters_go.wasm`.
package main

import "gateway/filter"

// Noop does nothing in any phase.
type Noop struct{ filter.Base }

func init() { filter.Register(&Noop{}) }

// main is not called: the gateway calls the filter's exports.
func main() {}
