// Package facts is what the gateway knows about the current request besides its headers.
//
//	f := facts.Get()
//	if f.TLS != nil && f.TLS.ClientCertificate != nil { ... }
package facts

import "gateway/filter/internal/abi"

// ClientCertificate is a client certificate the listener verified (mutual TLS).
type ClientCertificate struct {
	// Subject is the subject distinguished name, RFC 4514 style ("CN=alice, O=Example").
	Subject string
	// SANs are the subject alternative names ("DNS:...", "IP:...", "URI:...", "EMAIL:...").
	SANs []string
}

// TLS is the TLS facts of the client connection.
type TLS struct {
	// ServerName is the SNI server name the client sent ("" if none).
	ServerName string
	// ALPN is the negotiated ALPN protocol ("h2", "http/1.1"; "" if none).
	ALPN string
	// Version is the protocol version ("TLSv1.2", "TLSv1.3").
	Version string
	// ClientCertificate is the verified client certificate, nil when the client presented none.
	ClientCertificate *ClientCertificate
}

// Facts are the facts of the request being handled.
type Facts struct {
	// Route is the route's name.
	Route string
	// Upstream is the upstream the route forwards to ("" if it does not).
	Upstream string
	// ClientAddress is the client's address (ip:port).
	ClientAddress string
	// LocalAddress is the local address the request came in on.
	LocalAddress string
	// Scheme is "http" or "https".
	Scheme string
	// Protocol is "1.0", "1.1" or "2".
	Protocol string
	// RequestID is a process-unique request id.
	RequestID uint64
	// TLS is present when the client connected over TLS.
	TLS *TLS
}

// Get returns the facts of the request being handled.
func Get() Facts {
	f := abi.Facts()
	out := Facts{
		Route:         f.Route,
		Upstream:      f.Upstream,
		ClientAddress: f.ClientAddress,
		LocalAddress:  f.LocalAddress,
		Scheme:        f.Scheme,
		Protocol:      f.Protocol,
		RequestID:     f.RequestID,
	}
	if t := f.TLS; t != nil {
		out.TLS = &TLS{ServerName: t.ServerName, ALPN: t.ALPN, Version: t.Version}
		if c := t.ClientCertificate; c != nil {
			out.TLS.ClientCertificate = &ClientCertificate{Subject: c.Subject, SANs: c.SANs}
		}
	}
	return out
}
