package filter

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// ParseConfig reads the route's config (the JSON the gateway passes to Init) into v, a pointer to the
// filter's own type, with encoding/json's rules (field tags, case-insensitive names). Fields the type
// does not have are refused, and every error starts with the path of the field it is about
// (`limits[1].per: expected a string, not 5`, `colour: unknown field`): returned from Init, it is
// reported by the gateway at the line of the route's YAML where that field is written
// (`routes[0].filters[0].config.limits[1].per`). An absent config reads as an empty map.
//
//	type settings struct {
//		Header string `json:"header"`
//		Limits []struct {
//			Per   string `json:"per"`
//			Limit int    `json:"limit"`
//		} `json:"limits"`
//	}
//
//	func (f *MyFilter) Init(config string) error { return filter.ParseConfig(config, &f.settings) }
func ParseConfig(config string, v any) error {
	text := strings.TrimSpace(config)
	if text == "" || text == "null" {
		text = "{}"
	}
	target := reflect.ValueOf(v)
	if target.Kind() != reflect.Pointer || target.IsNil() {
		return fmt.Errorf("config: ParseConfig needs a non-nil pointer, not %T", v)
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("config: expected a map (written as YAML under the filter's `config:`)")
	}
	if err := check(raw, target.Type().Elem(), ""); err != nil {
		return err
	}
	strict := json.NewDecoder(bytes.NewReader([]byte(text)))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		return fmt.Errorf("config: %v", err)
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// at is the path of a field in `config`: `config` for the whole.
func at(path string) string {
	if path == "" {
		return "config"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a JSON value for an error: `5`, `"x"`, `a list`, `a map`, `null`.
func describe(raw any) string {
	switch x := raw.(type) {
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	case string:
		return strconv.Quote(x)
	default:
		return fmt.Sprint(x)
	}
}

// check walks raw against t and returns the first mismatch, in a stable order (map keys sorted).
func check(raw any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		if raw == nil {
			return nil
		}
		t = t.Elem()
	}
	// A type that reads itself is taken at its word (json.Unmarshal reports its errors).
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || t.Implements(jsonUnmarshaler) {
		return nil
	}
	if _, isString := raw.(string); isString && reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	mismatch := func(want string) error {
		return fmt.Errorf("%s: expected %s, not %s", at(path), want, describe(raw))
	}
	switch t.Kind() {
	case reflect.Interface:
		return nil
	case reflect.String:
		if _, ok := raw.(string); !ok {
			return mismatch("a string")
		}
	case reflect.Bool:
		if _, ok := raw.(bool); !ok {
			return mismatch("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(json.Number)
		if !ok {
			return mismatch("an integer")
		}
		if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			return mismatch("an integer")
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			return mismatch(fmt.Sprintf("an integer that fits in %d bits", t.Bits()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := raw.(json.Number)
		if !ok {
			return mismatch("a non-negative integer")
		}
		if _, err := strconv.ParseUint(n.String(), 10, 64); err != nil {
			return mismatch("a non-negative integer")
		}
		if _, err := strconv.ParseUint(n.String(), 10, t.Bits()); err != nil {
			return mismatch(fmt.Sprintf("a non-negative integer that fits in %d bits", t.Bits()))
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := raw.(json.Number); !ok {
			return mismatch("a number")
		}
	case reflect.Slice, reflect.Array:
		list, ok := raw.([]any)
		if !ok {
			if raw == nil && t.Kind() == reflect.Slice {
				return nil
			}
			return mismatch("a list")
		}
		for i, item := range list {
			if err := check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw == nil {
				return nil
			}
			return mismatch("a map")
		}
		for _, k := range sortedKeys(m) {
			if err := check(m[k], t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw == nil {
				return nil
			}
			return mismatch("a map")
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			f, ok := fields.find(k)
			if !ok {
				return fmt.Errorf("%s: unknown field (expected one of %s)", join(path, k), fields.names())
			}
			if err := check(m[k], f, join(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// fieldSet is a struct's JSON fields by name, as encoding/json sees them.
type fieldSet struct {
	order []string
	types map[string]reflect.Type
}

// find matches a key as encoding/json does: the exact name, else one that differs in case only.
func (s fieldSet) find(key string) (reflect.Type, bool) {
	if t, ok := s.types[key]; ok {
		return t, true
	}
	for _, name := range s.order {
		if strings.EqualFold(name, key) {
			return s.types[name], true
		}
	}
	return nil, false
}

func (s fieldSet) names() string {
	if len(s.order) == 0 {
		return "nothing"
	}
	return strings.Join(s.order, ", ")
}

// jsonFields lists a struct's exported fields under their JSON names (tags; `-` left out), with the
// fields of embedded structs promoted.
func jsonFields(t reflect.Type) fieldSet {
	s := fieldSet{types: map[string]reflect.Type{}}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			if f.Anonymous && name == "" {
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := s.types[name]; !dup {
				s.order = append(s.order, name)
				s.types[name] = f.Type
			}
		}
	}
	walk(t)
	return s
}
