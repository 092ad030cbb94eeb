//go:build wasip1

package abi

// The host functions of the WIT world, with their canonical-ABI core signatures (flattened
// parameters; results that do not fit one value are written by the host at `ret`).

//go:wasmimport gateway:filter/types@0.1.5 [method]request.method
func reqMethod(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.path
func reqPath(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.query
func reqQuery(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.set-path-with-query
func reqSetPathWithQuery(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.header
func reqHeader(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.headers
func reqHeaders(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.set-header
func reqSetHeader(h, np, nn, vp, vn, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.append-header
func reqAppendHeader(h, np, nn, vp, vn, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.remove-header
func reqRemoveHeader(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.body
func reqBody(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.set-body
func reqSetBody(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.set-method
func reqSetMethod(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]request.path-params
func reqPathParams(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.status
func respStatus(h uint32) uint32

//go:wasmimport gateway:filter/types@0.1.5 [method]response.set-status
func respSetStatus(h, status, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.header
func respHeader(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.headers
func respHeaders(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.set-header
func respSetHeader(h, np, nn, vp, vn, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.append-header
func respAppendHeader(h, np, nn, vp, vn, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.remove-header
func respRemoveHeader(h, p, n, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.body
func respBody(h, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [method]response.set-body
func respSetBody(h, p, n, ret uint32)

//go:wasmimport gateway:filter/http-client@0.1.5 send
func httpSend(up, upn, mp, mn, pp, pn, hp, hn, bp, bn, timeout, ret uint32)

//go:wasmimport gateway:filter/http-client@0.1.5 send-all
func httpSendAll(p, n, ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 backend
func storeBackend(ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 get
func storeGet(p, n, ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 set
func storeSet(kp, kn, vp, vn, hasTTL uint32, ttl uint64, ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 delete
func storeDelete(p, n, ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 increment
func storeIncrement(p, n uint32, delta int64, hasTTL uint32, ttl uint64, ret uint32)

//go:wasmimport gateway:filter/store@0.1.5 compare-and-swap
func storeCompareAndSwap(kp, kn, version, vp, vn, hasTTL uint32, ttl uint64, ret uint32)

//go:wasmimport gateway:filter/log@0.1.5 log
func logLog(level, p, n uint32)

//go:wasmimport gateway:filter/log@0.1.5 enabled
func logEnabled(level uint32) uint32

//go:wasmimport gateway:filter/metrics@0.1.5 counter-add
func metricsCounterAdd(p, n uint32, delta uint64, ret uint32)

//go:wasmimport gateway:filter/metrics@0.1.5 gauge-set
func metricsGaugeSet(p, n uint32, value uint64, ret uint32)

//go:wasmimport gateway:filter/metrics@0.1.5 gauge-add
func metricsGaugeAdd(p, n uint32, delta int64, ret uint32)

//go:wasmimport gateway:filter/metrics@0.1.5 histogram-record
func metricsHistogramRecord(p, n uint32, value uint64, ret uint32)

//go:wasmimport gateway:filter/clock@0.1.5 now-ms
func clockNowMs() uint64

//go:wasmimport gateway:filter/clock@0.1.5 monotonic-ns
func clockMonotonicNs() uint64

//go:wasmimport gateway:filter/random@0.1.5 bytes
func randomBytes(n, ret uint32)

//go:wasmimport gateway:filter/random@0.1.5 next-u64
func randomNextU64() uint64

//go:wasmimport gateway:filter/facts@0.1.5 get
func factsGet(ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 current
func consumersCurrent(ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 authenticate
func consumersAuthenticate(p, n, ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 get
func consumersGet(p, n, ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 find-by-key
func consumersFindByKey(kp, kn, keyp, keyn, ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 check-secret
func consumersCheckSecret(kp, kn, idp, idn, sp, sn, ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 find-credential
func consumersFindCredential(kp, kn, idp, idn, ret uint32)

//go:wasmimport gateway:filter/consumers@0.1.5 verify-hmac
func consumersVerifyHMAC(kp, kn, idp, idn, algorithm, mp, mn, macp, macn, ret uint32)

//go:wasmimport gateway:filter/types@0.1.5 [resource-drop]request
func reqDrop(h uint32)

//go:wasmimport gateway:filter/types@0.1.5 [resource-drop]response
func respDrop(h uint32)

//go:wasmimport gateway:filter/trace@0.1.5 set-attribute
func traceSetAttribute(kp, kn, vp, vn uint32)

//go:wasmimport gateway:filter/trace@0.1.5 add-event
func traceAddEvent(np, nn, ap, an uint32)

//go:wasmimport gateway:filter/phases@0.1.5 declare
func phasesDeclare(used, ret uint32)
