package abi

import "fmt"

// ErrorKind says which case of the WIT error variants (types.host-error, http-client.http-error,
// kv.kv-error, store.store-error) a host call returned. The filter package re-exports it.
type ErrorKind uint8

// The error kinds, one per case of the WIT error variants (cases with the same meaning share one).
const (
	// Denied: the plugin's config does not grant the capability.
	Denied ErrorKind = iota + 1
	// Invalid: an argument (header name or value, status, path, key, value) is not acceptable.
	Invalid
	// WrongPhase: the call does not apply in this phase.
	WrongPhase
	// Unsupported: the host does not implement the call.
	Unsupported
	// BadRequest: an outbound HTTP request is malformed.
	BadRequest
	// Timeout: an outbound HTTP request got no response in time.
	Timeout
	// Failed: the upstream could not be reached or failed mid-response.
	Failed
	// VersionMismatch: a compare-and-swap with a version that is not current.
	VersionMismatch
	// NotANumber: increment of a value that is not a decimal integer.
	NotANumber
	// Unavailable: the store did not answer in time or could not be reached (a Redis namespace);
	// whether a write took effect is unknown.
	Unavailable
)

var kindNames = [...]string{
	Denied: "denied", Invalid: "invalid", WrongPhase: "wrong phase", Unsupported: "unsupported",
	BadRequest: "bad request", Timeout: "timeout", Failed: "failed",
	VersionMismatch: "version mismatch", NotANumber: "not a number", Unavailable: "unavailable",
}

// String is the kind's name.
func (k ErrorKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("error kind %d", uint8(k))
}

// Error is why a host call did not do what was asked.
type Error struct {
	// Kind is the case of the WIT variant.
	Kind ErrorKind
	// Message is the host's explanation (empty for timeout, version mismatch, not a number).
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Message
}

// Is makes errors.Is(err, ErrDenied) (an *Error without a message) match every error of that kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && (t.Message == "" || t.Message == e.Message)
}

// storeErrorAt lifts a store.store-error (12 bytes, align 4): its u8 discriminant at 0 (denied 0,
// version-mismatch 1, not-a-number 2, invalid 3, unavailable 4), the message of denied, invalid
// and unavailable at 4.
func storeErrorAt(m Memory, at uint32) error {
	switch u8(m, at) {
	case 0:
		return &Error{Kind: Denied, Message: StringAt(m, at+4)}
	case 1:
		return &Error{Kind: VersionMismatch}
	case 2:
		return &Error{Kind: NotANumber}
	case 3:
		return &Error{Kind: Invalid, Message: StringAt(m, at+4)}
	case 4:
		return &Error{Kind: Unavailable, Message: StringAt(m, at+4)}
	}
	return &Error{Kind: Unsupported, Message: "unknown store-error case from the host"}
}

// storeResultAt lifts the discriminant of a result<T, store-error> at `at` whose payload (T or the
// error) is at at+payload: nil for ok, the error otherwise.
func storeResultAt(m Memory, at, payload uint32) error {
	if u8(m, at) == 0 {
		return nil
	}
	return storeErrorAt(m, at+payload)
}
