// json-redact: in JSON responses, replaces every value under a listed key (at any depth) and says
// how many in `x-redacted`. See examples/filters/README.md.
//
//	config: {fields: [password, ssn], replacement: "[redacted]"}
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gateway/filter"
	"gateway/filter/log"
)

// JSONRedact is the filter.
type JSONRedact struct {
	filter.Base
	fields      map[string]bool
	replacement string
	isJSON      bool
}

// Init parses the config.
func (j *JSONRedact) Init(config string) error {
	j.replacement = "[redacted]"
	var m map[string]any
	if err := json.Unmarshal([]byte(config), &m); err != nil || m == nil {
		return fmt.Errorf("expected a map with `fields` (a list of keys)")
	}
	var fields []string
	seen := false
	for k, v := range m {
		switch k {
		case "fields":
			list, ok := v.([]any)
			if !ok {
				return fmt.Errorf("fields: expected a list of keys, not %v", v)
			}
			seen = true
			for _, item := range list {
				s, ok := item.(string)
				if !ok || s == "" {
					return fmt.Errorf("fields: expected a non-empty key, not %v", item)
				}
				fields = append(fields, s)
			}
		case "replacement":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("replacement: expected a string, not %v", v)
			}
			j.replacement = s
		default:
			return fmt.Errorf("unknown key `%s` (expected fields, replacement)", k)
		}
	}
	if !seen {
		return fmt.Errorf("fields: required (the keys to redact)")
	}
	if len(fields) == 0 {
		return fmt.Errorf("fields: must not be empty")
	}
	j.fields = make(map[string]bool, len(fields))
	for _, f := range fields {
		j.fields[f] = true
	}
	return nil
}

// Options asks for the whole response body.
func (j *JSONRedact) Options() filter.Options { return filter.Options{ResponseBody: filter.Whole} }

// OnResponse remembers whether the response is JSON.
func (j *JSONRedact) OnResponse(resp *filter.Response) filter.Action {
	ct, _ := resp.Header("content-type")
	media, _, _ := strings.Cut(ct, ";")
	j.isJSON = strings.EqualFold(strings.TrimSpace(media), "application/json")
	return filter.Continue()
}

// OnResponseBody redacts a JSON body.
func (j *JSONRedact) OnResponseBody(resp *filter.Response, _ bool) filter.Action {
	if !j.isJSON {
		return filter.Continue()
	}
	body, ok := resp.Body()
	if !ok || !json.Valid(body) {
		return filter.Continue()
	}
	var out bytes.Buffer
	count, err := j.rewrite(json.NewDecoder(bytes.NewReader(body)), &out)
	if err != nil {
		log.Warn("json-redact: " + err.Error())
		return filter.Continue()
	}
	if err := resp.SetBody(out.Bytes()); err != nil {
		log.Warn("json-redact: cannot replace the body: " + err.Error())
	}
	if err := resp.SetHeader("x-redacted", strconv.Itoa(count)); err != nil {
		log.Warn("json-redact: cannot set x-redacted: " + err.Error())
	}
	return filter.Continue()
}

// rewrite copies one JSON document from dec to out compactly, keeping key order, with the values of
// listed keys replaced; it returns how many were.
func (j *JSONRedact) rewrite(dec *json.Decoder, out *bytes.Buffer) (int, error) {
	dec.UseNumber()
	count, err := j.value(dec, out)
	if err != nil {
		return 0, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, fmt.Errorf("trailing data after the JSON document")
	}
	return count, nil
}

func writeString(out *bytes.Buffer, s string) {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	out.Truncate(out.Len() - 1) // Encode's newline
}

// value copies one value (the next token and, for objects and arrays, what they hold).
func (j *JSONRedact) value(dec *json.Decoder, out *bytes.Buffer) (int, error) {
	tok, err := dec.Token()
	if err != nil {
		return 0, err
	}
	switch t := tok.(type) {
	case json.Delim:
		return j.container(t, dec, out)
	case string:
		writeString(out, t)
	case json.Number:
		out.WriteString(t.String())
	case bool:
		out.WriteString(strconv.FormatBool(t))
	case nil:
		out.WriteString("null")
	}
	return 0, nil
}

func (j *JSONRedact) container(open json.Delim, dec *json.Decoder, out *bytes.Buffer) (int, error) {
	count := 0
	out.WriteByte(byte(open))
	for i := 0; dec.More(); i++ {
		if i > 0 {
			out.WriteByte(',')
		}
		if open == '{' {
			tok, err := dec.Token()
			if err != nil {
				return 0, err
			}
			key, _ := tok.(string)
			writeString(out, key)
			out.WriteByte(':')
			if j.fields[key] {
				var skip json.RawMessage
				if err := dec.Decode(&skip); err != nil {
					return 0, err
				}
				writeString(out, j.replacement)
				count++
				continue
			}
		}
		n, err := j.value(dec, out)
		if err != nil {
			return 0, err
		}
		count += n
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return 0, err
	}
	if open == '{' {
		out.WriteByte('}')
	} else {
		out.WriteByte(']')
	}
	return count, nil
}

func init() { filter.Register(&JSONRedact{}) }

func main() {}
