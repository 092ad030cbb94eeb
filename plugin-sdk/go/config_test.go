package filter

import (
	"strings"
	"testing"
)

type testLimit struct {
	Per   string `json:"per"`
	Limit int    `json:"limit"`
}

type testSettings struct {
	Header  string            `json:"header"`
	Limits  []testLimit       `json:"limits"`
	Labels  map[string]string `json:"labels"`
	Enabled *bool             `json:"enabled"`
	skipped int
}

func TestParseConfigReadsIntoTheFiltersType(t *testing.T) {
	var s testSettings
	err := ParseConfig(`{"header":"x-key","limits":[{"per":"minute","limit":5}],"labels":{"a":"b"},"enabled":true}`, &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Header != "x-key" || len(s.Limits) != 1 || s.Limits[0].Limit != 5 || s.Labels["a"] != "b" || !*s.Enabled {
		t.Fatalf("%+v", s)
	}
	// Names match as encoding/json matches them: case aside.
	if err := ParseConfig(`{"HEADER":"h"}`, &s); err != nil || s.Header != "h" {
		t.Fatalf("%v %+v", err, s)
	}
	var empty testSettings
	if err := ParseConfig("", &empty); err != nil {
		t.Fatal(err)
	}
}

func TestParseConfigErrorsNameTheFieldPath(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"limits":[{"per":"m","limit":1},{"per":5,"limit":1}]}`, "limits[1].per: expected a string, not 5"},
		{`{"colour":"red"}`, "colour: unknown field (expected one of header, limits, labels, enabled)"},
		{`{"limits":[{"per":"m","limit":1,"burst":2}]}`, "limits[0].burst: unknown field (expected one of per, limit)"},
		{`{"limits":[{"limit":1.5}]}`, "limits[0].limit: expected an integer, not 1.5"},
		{`{"limits":{"per":"m"}}`, "limits: expected a list, not a map"},
		{`{"labels":{"a":1}}`, "labels.a: expected a string, not 1"},
		{`{"enabled":"yes"}`, `enabled: expected true or false, not "yes"`},
		{`just text`, "config: expected a map"},
		{`["a"]`, "config: expected a map, not a list"},
	}
	for _, c := range cases {
		var s testSettings
		err := ParseConfig(c.config, &s)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.config, err, c.want)
		}
	}
	if err := ParseConfig(`{}`, testSettings{}); err == nil {
		t.Error("a non-pointer is refused")
	}
}
