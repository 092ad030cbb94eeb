//go:build !wasip1

package filter

import (
	"encoding/binary"
	"errors"
	"testing"

	"gateway/filter/internal/abi"
)

type testFilter struct {
	Base
	config string
	kept   *Request
}

func (f *testFilter) Init(config string) error {
	if config == "bad" {
		return errors.New("bad config")
	}
	f.config = config
	return nil
}

func (f *testFilter) Options() Options { return Options{ResponseBody: Chunks} }

func (f *testFilter) OnRequest(req *Request) Action {
	f.kept = req
	return RespondString(403, "no").WithHeader("content-type", "text/plain")
}

func mem(t *testing.T) *abi.FakeMemory {
	t.Helper()
	m := abi.NewFakeMemory()
	abi.Mem = m
	abi.Drops = nil
	abi.Declared = nil
	return m
}

func le32(m *abi.FakeMemory, at uint32) uint32 { return binary.LittleEndian.Uint32(m.Bytes(at, 4)) }

func TestInitExport(t *testing.T) {
	m := mem(t)
	f := &testFilter{}
	registered = f
	defer func() { registered = nil }()
	cfg := m.String(`{"a":1}`)
	ret := exportInit(cfg, 7)
	if b := m.Bytes(ret, 6); b[0] != 0 || b[4] != uint8(Skip) || b[5] != uint8(Chunks) || f.config != `{"a":1}` {
		t.Fatalf("init ok: % x, config %q", b, f.config)
	}
	// testFilter has OnRequest only (Base has no handlers): that is the one phase declared.
	if len(abi.Declared) != 1 || abi.Declared[0] != abi.PhaseRequest {
		t.Fatalf("declared phases: %v", abi.Declared)
	}
	postReturn()
	ret = exportInit(m.String("bad"), 3)
	if m.Bytes(ret, 1)[0] != 1 || abi.StringAt(m, ret+4) != "bad config" {
		t.Fatalf("init error: % x", m.Bytes(ret, 12))
	}
	registered = nil
	ret = exportInit(0, 0)
	if m.Bytes(ret, 1)[0] != 1 || abi.StringAt(m, ret+4) == "" {
		t.Fatalf("no filter registered must be an init error")
	}
}

func TestHandlerExportDropsTheBorrowAndLowersTheAction(t *testing.T) {
	m := mem(t)
	f := &testFilter{}
	registered = f
	defer func() { registered = nil }()
	ret := exportOnRequest(5)
	if len(abi.Drops) != 1 || abi.Drops[0] != 5 {
		t.Fatalf("the request borrow must be dropped once: %v", abi.Drops)
	}
	if m.Bytes(ret, 1)[0] != 1 || binary.LittleEndian.Uint16(m.Bytes(ret+4, 2)) != 403 ||
		string(abi.BytesAt(m, ret+16)) != "no" || le32(m, ret+12) != 1 {
		t.Fatalf("respond action: % x", m.Bytes(ret, 24))
	}
	if hs := abi.HeadersAt(m, ret+8); hs[0] != (Header{Name: "content-type", Value: "text/plain"}) {
		t.Fatalf("headers: %v", hs)
	}
	postReturn()
	defer func() {
		if recover() == nil {
			t.Fatal("a Request used after its handler returned must panic")
		}
	}()
	f.kept.Method()
}

func TestBaseContinues(t *testing.T) {
	m := mem(t)
	registered = nil
	ret := exportOnResponseBody(9, 1)
	if m.Bytes(ret, 1)[0] != 0 || len(abi.Drops) != 1 || abi.Drops[0] != 9|1<<31 {
		t.Fatalf("continue without a filter: % x, drops %v", m.Bytes(ret, 1), abi.Drops)
	}
}

func TestActionsAndErrors(t *testing.T) {
	if Continue().Local != nil || Continue().WithHeader("a", "b").Local != nil {
		t.Fatal("Continue has no response")
	}
	a := Respond(204, nil).WithHeader("x", "1").WithHeader("y", "2")
	if a.Local.Status != 204 || len(a.Local.Headers) != 2 {
		t.Fatalf("%+v", a.Local)
	}
	var err error = &Error{Kind: Denied, Message: "no grant"}
	if !errors.Is(err, ErrDenied) || errors.Is(err, ErrInvalid) {
		t.Fatal("errors.Is against the kind targets")
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	registered = nil
	defer func() {
		registered = nil
		if recover() == nil {
			t.Fatal("a second Register must panic")
		}
	}()
	Register(&testFilter{})
	Register(&testFilter{})
}

type everyPhase struct{ testFilter }

func (*everyPhase) OnRequestBody(*Request, bool) Action   { return Continue() }
func (*everyPhase) OnResponse(*Response) Action           { return Continue() }
func (*everyPhase) OnResponseBody(*Response, bool) Action { return Continue() }

func TestPhasesAreTheHandlersTheTypeHas(t *testing.T) {
	if got := phases(Base{}); got != 0 {
		t.Fatalf("Base has no handlers: %b", got)
	}
	if got := phases(&testFilter{}); got != abi.PhaseRequest {
		t.Fatalf("OnRequest only: %b", got)
	}
	all := abi.PhaseRequest | abi.PhaseRequestBody | abi.PhaseResponse | abi.PhaseResponseBody
	if got := phases(&everyPhase{}); got != all {
		t.Fatalf("every handler: %b", got)
	}
}

func TestAHandlerTheTypeLacksContinues(t *testing.T) {
	m := mem(t)
	registered = Base{}
	defer func() { registered = nil }()
	ret := exportOnResponse(9)
	if m.Bytes(ret, 1)[0] != 0 || len(abi.Drops) != 1 {
		t.Fatalf("continue, borrow dropped: % x %v", m.Bytes(ret, 4), abi.Drops)
	}
}
