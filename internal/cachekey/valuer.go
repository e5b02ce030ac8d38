package cachekey

import (
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"reflect"
)

// This file keys driver.Valuer arguments: by their Value() result and, since
// a driver may read other methods first, by their raw contents.

// appendValuer keys a driver.Valuer by its type, its Value() result and its
// raw contents. The raw contents matter because pgx prefers its own
// interfaces (TextValue, Int64Value, ...) to Value when a type has both.
func appendValuer(buf []byte, vr driver.Valuer, rv reflect.Value, depth int) ([]byte, error) {
	t := rv.Type()
	if rv.Kind() == reflect.Pointer && rv.IsNil() {
		// A nil pointer whose target has Value is NULL to database/sql and
		// pgx alike; with a pointer receiver they call Value on nil, which
		// only the method knows the outcome of (often a panic).
		if t.Elem().Implements(valuerType) {
			return append(buf, tagNil), nil
		}
		return buf, fmt.Errorf("%w: nil %s with a pointer-receiver Value", ErrUnkeyable, t)
	}
	dv, err := vr.Value()
	if err != nil {
		return buf, fmt.Errorf("gormflight: cache key: %s.Value: %w", t, err)
	}
	buf = appendType(append(buf, tagValuer), t)
	if buf, err = appendValue(buf, dv, depth+1); err != nil {
		return buf, err
	}
	if raw, ok := appendRaw(append(buf, 1), rv, depth+1); ok {
		return raw, nil
	}
	if hasEncoderMethods(t) {
		return buf, fmt.Errorf("%w: %s has encoding methods besides Value and contents that cannot be keyed", ErrUnkeyable, t)
	}
	return append(buf, 0), nil
}

var valuerType = reflect.TypeFor[driver.Valuer]()

// valuerOnlyMethods are methods pgx and database/sql never consult for a
// driver.Valuer (pgx checks Valuer before json.Marshaler). A Valuer with any
// other method might be encoded through it instead of Value.
var valuerOnlyMethods = map[string]bool{
	"Value": true, "String": true, "Error": true, "MarshalJSON": true, "MarshalText": true,
	"GormDataType": true, "GormDBDataType": true,
}

func hasEncoderMethods(t reflect.Type) bool {
	for i := 0; i < t.NumMethod(); i++ {
		if !valuerOnlyMethods[t.Method(i).Name] {
			return true
		}
	}
	return false
}

// appendRaw encodes the memory of rv, unexported fields included, for a value
// whose type is already in the key. It reports false for contents with no
// stable encoding (maps, funcs, channels, cycles).
func appendRaw(buf []byte, rv reflect.Value, depth int) ([]byte, bool) {
	if depth > maxDepth {
		return buf, false
	}
	switch rv.Kind() {
	case reflect.Bool:
		return appendBool(buf, rv.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return appendUint(buf, rv.Uint()), true
	case reflect.Float32, reflect.Float64:
		return appendFloat(buf, rv.Float()), true
	case reflect.Complex64, reflect.Complex128:
		c := rv.Complex()
		return appendFloat(appendFloat(buf, real(c)), imag(c)), true
	case reflect.String:
		return appendString(append(buf, tagString), rv.String()), true
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(buf, tagNil), true
		}
		if rv.Kind() == reflect.Interface {
			buf = appendType(append(buf, tagTyped), rv.Elem().Type())
		}
		return appendRaw(append(buf, 1), rv.Elem(), depth+1)
	case reflect.Slice:
		if rv.IsNil() {
			return append(buf, tagNil), true
		}
		fallthrough
	case reflect.Array:
		buf = binary.AppendUvarint(append(buf, tagList), uint64(rv.Len()))
		for i := 0; i < rv.Len(); i++ {
			var ok bool
			if buf, ok = appendRaw(buf, rv.Index(i), depth+1); !ok {
				return buf, false
			}
		}
		return buf, true
	case reflect.Struct:
		for i := 0; i < rv.NumField(); i++ {
			var ok bool
			if buf, ok = appendRaw(buf, rv.Field(i), depth+1); !ok {
				return buf, false
			}
		}
		return buf, true
	}
	return buf, false
}
