module {{name}}

go 1.24

require gateway/filter v0.0.0

// The Go SDK (module gateway/filter), a local copy: nothing is downloaded.
replace gateway/filter => {{sdk}}
