//go:build !wasip1

package http

import (
	"strings"
	"testing"
)

// No host is set in these tests: a call that reached it would panic with the no-host message.

func TestSendAllOfNothingCallsNoHost(t *testing.T) {
	if rs := SendAll(nil); len(rs) != 0 {
		t.Fatalf("%+v", rs)
	}
}

func TestSendAllWithoutARequestPanicsBeforeTheHost(t *testing.T) {
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "calls[1] has no Request") {
			t.Fatalf("panic: %q", msg)
		}
	}()
	SendAll([]Call{{Upstream: "a", Request: NewRequest("GET", "/")}, {Upstream: "b"}})
}
