// Package metrics is metrics the plugin defines by name on first use, exported on the gateway's
// `/metrics` as `plugin_<name>{plugin="..."}`.
//
//	_ = metrics.CounterAdd("denied_total", 1)
package metrics

import "gateway/filter/internal/abi"

// CounterAdd adds delta to the counter name.
func CounterAdd(name string, delta uint64) error { return abi.Metric(abi.CounterAdd, name, delta) }

// GaugeSet sets the gauge name.
func GaugeSet(name string, value uint64) error { return abi.Metric(abi.GaugeSet, name, value) }

// GaugeAdd adds delta (possibly negative) to the gauge name.
func GaugeAdd(name string, delta int64) error {
	return abi.Metric(abi.GaugeAdd, name, uint64(delta))
}

// HistogramRecord records value into the histogram name.
func HistogramRecord(name string, value uint64) error {
	return abi.Metric(abi.HistogramRecord, name, value)
}
