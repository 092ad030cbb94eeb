//go:build !wasip1

package abi

// Outside wasip1 the host functions are variables that native tests set to play the host; unset,
// they panic with noHost.

var reqMethod = func(h, ret uint32) { panic(noHost) }

var reqPath = func(h, ret uint32) { panic(noHost) }

var reqQuery = func(h, ret uint32) { panic(noHost) }

var reqSetPathWithQuery = func(h, p, n, ret uint32) { panic(noHost) }

var reqHeader = func(h, p, n, ret uint32) { panic(noHost) }

var reqHeaders = func(h, ret uint32) { panic(noHost) }

var reqSetHeader = func(h, np, nn, vp, vn, ret uint32) { panic(noHost) }

var reqAppendHeader = func(h, np, nn, vp, vn, ret uint32) { panic(noHost) }

var reqRemoveHeader = func(h, p, n, ret uint32) { panic(noHost) }

var reqBody = func(h, ret uint32) { panic(noHost) }

var reqSetBody = func(h, p, n, ret uint32) { panic(noHost) }

var reqSetMethod = func(h, p, n, ret uint32) { panic(noHost) }

var reqPathParams = func(h, ret uint32) { panic(noHost) }

var respStatus = func(h uint32) uint32 { panic(noHost) }

var respSetStatus = func(h, status, ret uint32) { panic(noHost) }

var respHeader = func(h, p, n, ret uint32) { panic(noHost) }

var respHeaders = func(h, ret uint32) { panic(noHost) }

var respSetHeader = func(h, np, nn, vp, vn, ret uint32) { panic(noHost) }

var respAppendHeader = func(h, np, nn, vp, vn, ret uint32) { panic(noHost) }

var respRemoveHeader = func(h, p, n, ret uint32) { panic(noHost) }

var respBody = func(h, ret uint32) { panic(noHost) }

var respSetBody = func(h, p, n, ret uint32) { panic(noHost) }

var httpSend = func(up, upn, mp, mn, pp, pn, hp, hn, bp, bn, timeout, ret uint32) { panic(noHost) }

var httpSendAll = func(p, n, ret uint32) { panic(noHost) }

var storeBackend = func(ret uint32) { panic(noHost) }

var storeGet = func(p, n, ret uint32) { panic(noHost) }

var storeSet = func(kp, kn, vp, vn, hasTTL uint32, ttl uint64, ret uint32) { panic(noHost) }

var storeDelete = func(p, n, ret uint32) { panic(noHost) }

var storeIncrement = func(p, n uint32, delta int64, hasTTL uint32, ttl uint64, ret uint32) { panic(noHost) }

var storeCompareAndSwap = func(kp, kn, version, vp, vn, hasTTL uint32, ttl uint64, ret uint32) { panic(noHost) }

var logLog = func(level, p, n uint32) { panic(noHost) }

var logEnabled = func(level uint32) uint32 { panic(noHost) }

var metricsCounterAdd = func(p, n uint32, delta uint64, ret uint32) { panic(noHost) }

var metricsGaugeSet = func(p, n uint32, value uint64, ret uint32) { panic(noHost) }

var metricsGaugeAdd = func(p, n uint32, delta int64, ret uint32) { panic(noHost) }

var metricsHistogramRecord = func(p, n uint32, value uint64, ret uint32) { panic(noHost) }

var clockNowMs = func() uint64 { panic(noHost) }

var clockMonotonicNs = func() uint64 { panic(noHost) }

var randomBytes = func(n, ret uint32) { panic(noHost) }

var randomNextU64 = func() uint64 { panic(noHost) }

var factsGet = func(ret uint32) { panic(noHost) }

var consumersCurrent = func(ret uint32) { panic(noHost) }

var consumersAuthenticate = func(p, n, ret uint32) { panic(noHost) }

var consumersGet = func(p, n, ret uint32) { panic(noHost) }

var consumersFindByKey = func(kp, kn, keyp, keyn, ret uint32) { panic(noHost) }

var consumersCheckSecret = func(kp, kn, idp, idn, sp, sn, ret uint32) { panic(noHost) }

var consumersFindCredential = func(kp, kn, idp, idn, ret uint32) { panic(noHost) }

var consumersVerifyHMAC = func(kp, kn, idp, idn, algorithm, mp, mn, macp, macn, ret uint32) { panic(noHost) }

// Drops records the borrow handles dropped in a native build (request handles as is, response
// handles with the high bit set), for tests of the exports.
var Drops []uint32

var reqDrop = func(h uint32) { Drops = append(Drops, h) }

var respDrop = func(h uint32) { Drops = append(Drops, h|1<<31) }

var traceSetAttribute = func(kp, kn, vp, vn uint32) { panic(noHost) }

var traceAddEvent = func(np, nn, ap, an uint32) { panic(noHost) }

// Declared records the phases declared in a native build (phases.declare answers ok there).
var Declared []uint32

var phasesDeclare = func(used, ret uint32) {
	Declared = append(Declared, used)
	Mem.Bytes(ret, 1)[0] = 0
}
