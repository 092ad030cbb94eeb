// The Go SDK for gateway filters. Not published yet: a filter requires it and points a replace at a
// local copy of this folder (`require gateway/filter v0.0.0` + `replace gateway/filter => ./sdk`),
// which is what `gateway plugin new go` writes.
module gateway/filter

go 1.24
