package cachekey

import (
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"fmt"
	"reflect"
	"time"
)

// This file chooses the encoding of an argument from its Go type, the way
// drivers choose what to send.

// appendValue encodes one argument; depth counts the lists, pointers and
// Valuers it was reached through.
func appendValue(buf []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return buf, fmt.Errorf("%w: nested deeper than %d levels", ErrUnkeyable, maxDepth)
	}

	// Fast path: the concrete types GORM passes most often, without reflect.
	switch x := v.(type) {
	case nil:
		return append(buf, tagNil), nil
	case string:
		return appendString(append(buf, tagString), x), nil
	case int:
		return appendInt(buf, int64(x)), nil
	case int64:
		return appendInt(buf, x), nil
	case int32:
		return appendInt(buf, int64(x)), nil
	case uint:
		return appendUint(buf, uint64(x)), nil
	case float64:
		return appendFloat(buf, x), nil
	case bool:
		return appendBool(buf, x), nil
	case time.Time:
		return appendTime(buf, x), nil
	case []byte:
		return appendBytes(buf, x), nil
	case sql.NamedArg:
		buf = appendString(append(buf, tagNamed), x.Name)
		return appendValue(buf, x.Value, depth+1)
	}
	return appendReflected(buf, v, depth)
}

// appendReflected encodes any other type by what it declares: a query
// rewriter cannot be keyed, a Valuer is its Value, a type with methods is
// keyed by its name, and anything else by its kind.
func appendReflected(buf []byte, v any, depth int) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if _, ok := rv.Type().MethodByName("RewriteQuery"); ok {
		// A pgx.QueryRewriter replaces the SQL and arguments with whatever
		// it computes; the key cannot know what that is.
		return buf, fmt.Errorf("%w: %T rewrites the query", ErrUnkeyable, v)
	}
	// Valuers come before the kind switch: their Value() result, not their
	// Go representation, is what most drivers see.
	if vr, ok := v.(driver.Valuer); ok {
		return appendValuer(buf, vr, rv, depth)
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return append(buf, tagNil), nil
		}
		if rv.Type().NumMethod() == 0 {
			return appendValue(buf, rv.Elem().Interface(), depth+1)
		}
	}
	if rv.Type().NumMethod() > 0 {
		// Methods may change what the driver sends (pgx consults String,
		// TextValue, Int64Value, ... before the underlying kind), and two
		// values of one type with equal contents call them alike.
		buf = appendType(append(buf, tagTyped), rv.Type())
		if rv.Kind() == reflect.Pointer {
			return appendValue(buf, rv.Elem().Interface(), depth+1)
		}
	}
	return appendKind(buf, rv, depth)
}

// appendKind encodes v by its kind, as drivers do for a type without methods.
func appendKind(buf []byte, rv reflect.Value, depth int) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Bool:
		return appendBool(buf, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendInt(buf, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return appendUint(buf, rv.Uint()), nil
	case reflect.Float32:
		return appendFloat32(buf, float32(rv.Float())), nil
	case reflect.Float64:
		return appendFloat(buf, rv.Float()), nil
	case reflect.String:
		return appendString(append(buf, tagString), rv.String()), nil
	case reflect.Struct:
		if t, ok := rv.Interface().(time.Time); ok {
			return appendTime(buf, t), nil
		}
	case reflect.Slice, reflect.Array:
		// Only an element type of exactly byte makes a byte string: pgx
		// treats []myByte as an array of small integers.
		if rv.Kind() == reflect.Slice && rv.Type().Elem() == byteType {
			return appendBytes(buf, rv.Bytes()), nil
		}
		return appendList(buf, rv, depth)
	}
	return buf, fmt.Errorf("%w: %s", ErrUnkeyable, rv.Type())
}

var byteType = reflect.TypeFor[byte]()

// appendList keys a slice or array by its type as well as its elements:
// drivers choose the array type from the Go element type ([]int is int8[],
// [16]byte a uuid), and a nil slice is NULL where an empty one is '{}'.
func appendList(buf []byte, rv reflect.Value, depth int) ([]byte, error) {
	buf = appendType(append(buf, tagList), rv.Type())
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		return append(buf, 0), nil
	}
	n := rv.Len()
	buf = binary.AppendUvarint(append(buf, 1), uint64(n))
	for i := 0; i < n; i++ {
		var err error
		if buf, err = appendValue(buf, rv.Index(i).Interface(), depth+1); err != nil {
			return buf, err
		}
	}
	return buf, nil
}
