package filter

import "gateway/filter/internal/abi"

// The exports' logic, independent of the build (the wasip1 file only declares the exports).

var registered Filter

// Register makes f the instance's filter. Call it once, from an init function of package main.
func Register(f Filter) {
	if f == nil {
		panic("filter.Register: nil filter")
	}
	if registered != nil {
		panic("filter.Register: called twice; a component has one filter")
	}
	registered = f
}

// exportInit is `init`: the config string is at (ptr, n) in memory the host allocated; the
// result<options, string> goes into a block that lives until cabi_post_init.
func exportInit(ptr, n uint32) uint32 {
	config := abi.LiftString(abi.Mem, ptr, n)
	abi.Mem.Release(0)
	abi.Collect()
	if registered == nil {
		return abi.LowerInitResult(abi.Mem, 0, 0,
			"the Go filter registered no filter: call filter.Register from an init function", true)
	}
	if err := registered.Init(config); err != nil {
		return abi.LowerInitResult(abi.Mem, 0, 0, err.Error(), true)
	}
	o := registered.Options()
	if o.RequestBody > Chunks || o.ResponseBody > Chunks {
		return abi.LowerInitResult(abi.Mem, 0, 0, "Options: body mode out of range", true)
	}
	if err := abi.DeclarePhases(phases(registered)); err != nil {
		return abi.LowerInitResult(abi.Mem, 0, 0, "the gateway refused the filter's phases: "+err.Error(), true)
	}
	return abi.LowerInitResult(abi.Mem, uint8(o.RequestBody), uint8(o.ResponseBody), "", false)
}

// lowerAction writes the action into a block that lives until the cabi_post_ call.
func lowerAction(a Action) uint32 {
	if a.Local == nil {
		return abi.LowerAction(abi.Mem, false, 0, nil, nil)
	}
	l := a.Local
	return abi.LowerAction(abi.Mem, true, l.Status, l.Headers, l.Body)
}

func handler() Filter {
	abi.Mem.Release(0)
	abi.Collect()
	if registered == nil {
		return Base{}
	}
	return registered
}

func exportOnRequest(h uint32) uint32 {
	f, _ := handler().(RequestFilter)
	req := &Request{handle: h, live: true}
	a := Continue()
	if f != nil {
		a = f.OnRequest(req)
	}
	req.live = false
	abi.DropBorrow(abi.KindRequest, h)
	return lowerAction(a)
}

func exportOnRequestBody(h uint32, eos uint32) uint32 {
	f, _ := handler().(RequestBodyFilter)
	req := &Request{handle: h, live: true}
	a := Continue()
	if f != nil {
		a = f.OnRequestBody(req, eos != 0)
	}
	req.live = false
	abi.DropBorrow(abi.KindRequest, h)
	return lowerAction(a)
}

func exportOnResponse(h uint32) uint32 {
	f, _ := handler().(ResponseFilter)
	resp := &Response{handle: h, live: true}
	a := Continue()
	if f != nil {
		a = f.OnResponse(resp)
	}
	resp.live = false
	abi.DropBorrow(abi.KindResponse, h)
	return lowerAction(a)
}

func exportOnResponseBody(h uint32, eos uint32) uint32 {
	f, _ := handler().(ResponseBodyFilter)
	resp := &Response{handle: h, live: true}
	a := Continue()
	if f != nil {
		a = f.OnResponseBody(resp, eos != 0)
	}
	resp.live = false
	abi.DropBorrow(abi.KindResponse, h)
	return lowerAction(a)
}

// postReturn frees the result block of the export that just returned.
func postReturn() { abi.Mem.Release(0) }
