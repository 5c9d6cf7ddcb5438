package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
)

// Decode fills v, a pointer to a struct with json tags, from the request:
// the JSON body for POST, PUT and PATCH, the query string otherwise (the
// SDKs send GET and DELETE parameters there, nested fields with dots and
// lists as repeated keys). Query parameters are also read for bodied
// methods, under the body's fields. Unknown fields are ignored, as clients
// newer than the server send them; a value of the wrong type is
// MALFORMED_REQUEST naming the field.
func (r *Request) Decode(v any) error {
	if err := decodeQuery(r.HTTP.URL.Query(), v); err != nil {
		return err
	}
	switch r.HTTP.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		return decodeJSON(r.body, v)
	}
	// A DELETE may carry a JSON body too (older clients).
	if len(bytes.TrimSpace(r.body)) > 0 && isJSON(r.HTTP) {
		return decodeJSON(r.body, v)
	}
	return nil
}

func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - %v at offset %d", syn, syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - expected a JSON object")
		}
		return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - field '%s' must be %s, got %s", field, kindName(typ.Type), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - the JSON ends early")
	default:
		return Errorf(MalformedRequest, "Invalid JSON given in the body of the request - %v", err)
	}
}

func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// decodeQuery fills the struct v points to from query values by json tag
// name; nested struct fields use "parent.child" names.
func decodeQuery(q url.Values, v any) error {
	if len(q) == 0 {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	return fillStruct(q, "", rv.Elem())
}

func fillStruct(q url.Values, prefix string, sv reflect.Value) error {
	st := sv.Type()
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		if !f.IsExported() {
			continue
		}
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fv := sv.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Struct && f.Anonymous {
			if err := fillStruct(q, prefix, fv); err != nil {
				return err
			}
			continue
		}
		key := prefix + name
		if ft.Kind() == reflect.Struct || (ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct) {
			if !hasPrefix(q, key+".") {
				continue
			}
			target := fv
			if ft.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(ft.Elem()))
				}
				target = fv.Elem()
			}
			if err := fillStruct(q, key+".", target); err != nil {
				return err
			}
			continue
		}
		vals, ok := q[key]
		if !ok || len(vals) == 0 {
			continue
		}
		if err := setValue(fv, vals, key); err != nil {
			return err
		}
	}
	return nil
}

func hasPrefix(q url.Values, p string) bool {
	for k := range q {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func setValue(fv reflect.Value, vals []string, key string) error {
	if fv.Kind() == reflect.Pointer {
		n := reflect.New(fv.Type().Elem())
		if err := setValue(n.Elem(), vals, key); err != nil {
			return err
		}
		fv.Set(n)
		return nil
	}
	if fv.Kind() == reflect.Slice {
		// Repeated keys, or one comma-separated value.
		if len(vals) == 1 && fv.Type().Elem().Kind() != reflect.String {
			vals = strings.Split(vals[0], ",")
		}
		s := reflect.MakeSlice(fv.Type(), len(vals), len(vals))
		for i, v := range vals {
			if err := setScalar(s.Index(i), v, key); err != nil {
				return err
			}
		}
		fv.Set(s)
		return nil
	}
	return setScalar(fv, vals[len(vals)-1], key)
}

func setScalar(fv reflect.Value, s, key string) error {
	bad := func() error {
		return Errorf(InvalidParameterValue, "Invalid value for parameter '%s': expected %s, got %q", key, kindName(fv.Type()), s)
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad()
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, fv.Type().Bits())
		if err != nil {
			return bad()
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, fv.Type().Bits())
		if err != nil {
			return bad()
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, fv.Type().Bits())
		if err != nil {
			return bad()
		}
		fv.SetFloat(n)
	default:
		if fv.Type() == reflect.TypeOf(json.Number("")) {
			fv.SetString(s)
			return nil
		}
		return fmt.Errorf("query parameter %s: unsupported field type %s", key, fv.Type())
	}
	return nil
}

// DecodeJSON decodes a JSON body read by a streaming handler, with the same
// errors as Request.Decode.
func DecodeJSON(body []byte, v any) error { return decodeJSON(body, v) }
