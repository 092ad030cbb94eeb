//go:build !wasip1

package kv

import (
	"errors"
	"testing"
	"time"

	"gateway/filter"
)

func TestTTLInMilliseconds(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want uint64 // 0: none
	}{
		{0, 0}, {-time.Second, 0}, {time.Nanosecond, 1}, {999 * time.Microsecond, 1},
		{1500 * time.Millisecond, 1500}, {1999 * time.Microsecond, 1}, {time.Hour, 3_600_000},
	} {
		got := ttlMs(c.ttl)
		if (got == nil) != (c.want == 0) || (got != nil && *got != c.want) {
			t.Errorf("ttl %v: %v, want %d ms (0: none)", c.ttl, got, c.want)
		}
	}
}

func TestBackendNames(t *testing.T) {
	if Local.String() != "local" || Redis.String() != "redis" || BackendKind(7).String() != "unknown" {
		t.Fatalf("%v %v %v", Local, Redis, BackendKind(7))
	}
}

func TestUnavailableIsATypedError(t *testing.T) {
	err := error(&filter.Error{Kind: filter.Unavailable, Message: "redis did not answer within 50ms"})
	if !errors.Is(err, filter.ErrUnavailable) || errors.Is(err, filter.ErrTimeout) || errors.Is(err, filter.ErrInvalid) {
		t.Fatalf("errors.Is on %v", err)
	}
	var e *filter.Error
	if !errors.As(err, &e) || e.Message != "redis did not answer within 50ms" || err.Error() != "unavailable: redis did not answer within 50ms" {
		t.Fatalf("message: %v", err)
	}
}
