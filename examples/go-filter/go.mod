module go-filter

go 1.24

require gateway/filter v0.0.0

// The SDK is in this repository; a filter kept elsewhere points this at its copy of plugin-sdk/go.
replace gateway/filter => ../../plugin-sdk/go
