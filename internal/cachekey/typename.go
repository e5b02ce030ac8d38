package cachekey

import (
	"fmt"
	"reflect"
	"sync"
)

var typeNames sync.Map // reflect.Type -> string

// appendType appends a name that tells apart types from different packages
// that share a short name (reflect's String gives only the package name).
func appendType(buf []byte, t reflect.Type) []byte {
	name, ok := typeNames.Load(t)
	if !ok {
		name, _ = typeNames.LoadOrStore(t, typeName(t))
	}
	return appendString(buf, name.(string))
}

func typeName(t reflect.Type) string {
	if t.Name() != "" {
		if t.PkgPath() == "" {
			return t.Name()
		}
		return t.PkgPath() + "." + t.Name()
	}
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + typeName(t.Elem())
	case reflect.Slice:
		return "[]" + typeName(t.Elem())
	case reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), typeName(t.Elem()))
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	}
	return t.String()
}
