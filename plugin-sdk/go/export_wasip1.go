//go:build wasip1

package filter

// The world's exports, with their canonical-ABI core signatures; results are returned by address
// and freed in the matching cabi_post_ function.

//go:wasmexport init
func wasmInit(ptr, n uint32) uint32 { return exportInit(ptr, n) }

//go:wasmexport cabi_post_init
func wasmPostInit(uint32) { postReturn() }

//go:wasmexport on-request
func wasmOnRequest(h uint32) uint32 { return exportOnRequest(h) }

//go:wasmexport cabi_post_on-request
func wasmPostOnRequest(uint32) { postReturn() }

//go:wasmexport on-request-body
func wasmOnRequestBody(h, eos uint32) uint32 { return exportOnRequestBody(h, eos) }

//go:wasmexport cabi_post_on-request-body
func wasmPostOnRequestBody(uint32) { postReturn() }

//go:wasmexport on-response
func wasmOnResponse(h uint32) uint32 { return exportOnResponse(h) }

//go:wasmexport cabi_post_on-response
func wasmPostOnResponse(uint32) { postReturn() }

//go:wasmexport on-response-body
func wasmOnResponseBody(h, eos uint32) uint32 { return exportOnResponseBody(h, eos) }

//go:wasmexport cabi_post_on-response-body
func wasmPostOnResponseBody(uint32) { postReturn() }
