package testdb

import (
	"database/sql/driver"
	"sync/atomic"
)

// MutableID is a driver.Valuer its owner changes, as a reused request
// object's would: atomic, since a flight reads it from its own goroutine.
type MutableID struct{ v atomic.Int64 }

// NewMutableID returns a MutableID of value v.
func NewMutableID(v int64) *MutableID {
	id := new(MutableID)
	id.v.Store(v)
	return id
}

// Set changes the value.
func (m *MutableID) Set(v int64) { m.v.Store(v) }

// Value is the current value.
func (m *MutableID) Value() (driver.Value, error) { return m.v.Load(), nil }
