//go:build wasip1

package sdk

import "unsafe"

//go:wasmimport safeclose_v1 get_method
func getMethod(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 get_uri
func getURI(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 get_header_names
func getHeaderNames(kind uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport safeclose_v1 get_header_values
func getHeaderValues(kind uint32, name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport safeclose_v1 get_cookie
func getCookie(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport safeclose_v1 get_source_addr
func getSourceAddr(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 get_body
func getBody(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 set_subject
func setSubject(p unsafe.Pointer, n uint32) int32

//go:wasmimport safeclose_v1 set_claim
func setClaim(name unsafe.Pointer, nameLen uint32, val unsafe.Pointer, valLen uint32) int32

//go:wasmimport safeclose_v1 get_config
func getConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 log_enabled
func logEnabled(level int32) uint32

//go:wasmimport safeclose_v1 log
func logMsg(level int32, p unsafe.Pointer, n uint32)

//go:wasmimport safeclose_v1 now
func now() int64

//go:wasmimport safeclose_v1 jwt_verify
func jwtVerify(tok unsafe.Pointer, n uint32) int32

//go:wasmimport safeclose_v1 jwt_claim
func jwtClaim(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport safeclose_v1 hmac_sha256_verify
func hmacSHA256Verify(key unsafe.Pointer, keyLen uint32, msg unsafe.Pointer, msgLen uint32, mac unsafe.Pointer, macLen uint32) int32

//go:wasmimport safeclose_v1 sha256
func sha256Sum(msg unsafe.Pointer, n uint32, buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 kv_get
func kvGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, limit uint32) uint64

//go:wasmimport safeclose_v1 kv_set
func kvSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32, ttl uint32) int32

//go:wasmimport safeclose_v1 kv_delete
func kvDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport safeclose_v1 get_event
func getEvent(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 get_item_context
func getItemContext(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport safeclose_v1 set_payload
func setPayload(p unsafe.Pointer, n uint32) int32

//go:wasmimport safeclose_v1 add_forward
func addForward(name unsafe.Pointer, n uint32) int32
