//go:build !wasip1

package consumers

import (
	"strings"
	"testing"

	"gateway/filter/internal/abi"
)

func TestCredentialAttribute(t *testing.T) {
	c := &Credential{Attributes: []Attribute{{"algorithm", "RS256"}, {"public-key", "pem"}, {"algorithm", "later"}}}
	if v, ok := c.Attribute("algorithm"); !ok || v != "RS256" {
		t.Fatalf("the first algorithm: %q %v", v, ok)
	}
	if v, ok := c.Attribute("public-key"); !ok || v != "pem" {
		t.Fatalf("public-key: %q %v", v, ok)
	}
	if v, ok := c.Attribute("secret"); ok || v != "" {
		t.Fatalf("absent: %q %v", v, ok)
	}
}

func TestHMACAlgorithms(t *testing.T) {
	// The constants are the WIT enum's case indices, which the host reads as they are.
	for i, a := range []HMACAlgorithm{SHA256, SHA384, SHA512} {
		if uint32(a) != uint32(i) || uint32(a) >= abi.HMACAlgorithms {
			t.Fatalf("%v is %d", a, a)
		}
	}
	if SHA384.String() != "sha384" || HMACAlgorithm(9).String() != "HMACAlgorithm(9)" {
		t.Fatalf("names: %v %v", SHA384, HMACAlgorithm(9))
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "unknown algorithm HMACAlgorithm(3)") {
			t.Fatalf("an unknown algorithm must panic before the host call: %v", r)
		}
	}()
	VerifyHMAC("jwt-auth", "k", HMACAlgorithm(3), nil, nil)
}
