// Package consumers is the consumers the gateway's config names (top-level `consumers:`: a name,
// groups, credentials of some kinds) and which of them the current request is authenticated as.
// Secrets stay in the gateway: a filter asks whether a key, a password or a MAC belongs to a
// consumer (compared in constant time), and never reads a secret nor gets anything made with one.
//
// Current and Get need no grant. The others need the plugin's `capabilities: {consumers: true}` in
// the gateway's config: without it, Authenticate is filter.ErrDenied and the lookups find nothing.
//
// The credential kinds the config knows, with their fields:
//   - "key-auth": key (secret; the key is its own identifier);
//   - "basic-auth": username (the identifier), password (secret);
//   - "jwt-auth": key (the identifier: the token's iss or kid, as the filter decides), secret (for
//     HMAC algorithms), algorithm and public-key (PEM, for the others; attributes).
//
// An authentication filter finds the consumer and authenticates the request as it; later filters
// read it:
//
//	if c := consumers.FindByKey("key-auth", key); c != nil {
//		if err := consumers.Authenticate(c.Name); err != nil { ... }
//	}
//	...
//	if c := consumers.Current(); c != nil && slices.Contains(c.Groups, "admins") { ... }
package consumers

import (
	"fmt"

	"gateway/filter/internal/abi"
)

// Consumer is a consumer: its name and groups.
type Consumer struct {
	// Name is its name, unique in the config.
	Name string
	// Groups are the groups it belongs to, in config order.
	Groups []string
}

// Attribute is one of a credential's fields that are not secret ("algorithm", "public-key").
type Attribute struct {
	Name, Value string
}

// Credential is a consumer's credential of one kind, without its secret.
//
//	if c := consumers.FindCredential("jwt-auth", kid); c != nil {
//		pem, _ := c.Attribute("public-key")
//	}
type Credential struct {
	// Consumer is whose credential it is.
	Consumer Consumer
	// ID is its identifier ("basic-auth": the username; "jwt-auth": the key).
	ID string
	// Attributes are the kind's fields that are not secret ("jwt-auth": algorithm, public-key).
	Attributes []Attribute
}

// Attribute is the value of the attribute name, and whether the credential has it.
func (c *Credential) Attribute(name string) (string, bool) {
	for _, a := range c.Attributes {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// HMACAlgorithm is a hash function VerifyHMAC can use.
type HMACAlgorithm uint8

// The HMAC algorithms (the cases of the WIT enum hmac-algorithm, in order).
const (
	// SHA256 is HMAC-SHA-256 (32-byte MACs; JWT's HS256).
	SHA256 HMACAlgorithm = iota
	// SHA384 is HMAC-SHA-384 (48-byte MACs; HS384).
	SHA384
	// SHA512 is HMAC-SHA-512 (64-byte MACs; HS512).
	SHA512
)

// String is the algorithm's WIT name ("sha256", ...).
func (a HMACAlgorithm) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case SHA384:
		return "sha384"
	case SHA512:
		return "sha512"
	}
	return fmt.Sprintf("HMACAlgorithm(%d)", uint8(a))
}

func consumer(c *abi.Consumer) *Consumer {
	if c == nil {
		return nil
	}
	return &Consumer{Name: c.Name, Groups: c.Groups}
}

// Current is the consumer the request is authenticated as (by an earlier filter, or this one), nil
// if none.
func Current() *Consumer { return consumer(abi.ConsumersCurrent()) }

// Authenticate authenticates the request as the consumer name, for every later filter, the access
// log and metrics. Request phases only (filter.ErrWrongPhase after); filter.ErrInvalid when no
// consumer has that name; filter.ErrDenied without the grant.
func Authenticate(name string) error { return abi.ConsumersAuthenticate(name) }

// Get is the consumer called name, nil if the config has none. It works in Init too (to check a
// configured anonymous consumer).
func Get(name string) *Consumer { return consumer(abi.ConsumersGet(name)) }

// FindByKey is the consumer holding a credential of kind whose secret is key ("key-auth"), nil if
// none (or without the grant).
func FindByKey(kind, key string) *Consumer { return consumer(abi.ConsumersFindByKey(kind, key)) }

// CheckSecret is the consumer holding a credential of kind with identifier id and secret secret
// ("basic-auth": username and password), compared in constant time; nil if none (or without the
// grant).
func CheckSecret(kind, id, secret string) *Consumer {
	return consumer(abi.ConsumersCheckSecret(kind, id, secret))
}

// FindCredential is the credential of kind with identifier id, without its secret; nil if none (or
// without the grant).
func FindCredential(kind, id string) *Credential {
	c := abi.ConsumersFindCredential(kind, id)
	if c == nil {
		return nil
	}
	out := &Credential{Consumer: *consumer(&c.Consumer), ID: c.ID, Attributes: make([]Attribute, len(c.Attributes))}
	for i, a := range c.Attributes {
		out.Attributes[i] = Attribute{Name: a.Name, Value: a.Value}
	}
	return out
}

// VerifyHMAC is the consumer holding the credential of kind with identifier id when mac is the HMAC
// of message keyed with that credential's secret ("jwt-auth": HS256/384/512 signatures), compared
// by the gateway in constant time; nil otherwise (no such credential, no secret, another MAC, or
// without the grant). The secret never leaves the gateway, nor does anything made with it. It
// panics on an algorithm that is not one of the constants.
//
//	c := consumers.VerifyHMAC("jwt-auth", iss, consumers.SHA256, []byte(headerAndPayload), signature)
func VerifyHMAC(kind, id string, algorithm HMACAlgorithm, message, mac []byte) *Consumer {
	if uint32(algorithm) >= abi.HMACAlgorithms {
		panic("consumers: VerifyHMAC with an unknown algorithm " + algorithm.String())
	}
	return consumer(abi.ConsumersVerifyHMAC(kind, id, uint32(algorithm), message, mac))
}
