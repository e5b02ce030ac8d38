package testdb

import (
	"database/sql/driver"
	"sync"
	"sync/atomic"
)

// MutableID is a driver.Valuer its owner changes, as a reused request
// object's would: atomic, so that a test may change it while a flight runs.
type MutableID struct{ v atomic.Int64 }

// valueCalls counts the calls of Value per MutableID, outside it: a
// counter inside would be part of the contents a cache key is made from.
var valueCalls sync.Map // *MutableID -> *atomic.Int64

// NewMutableID returns a MutableID of value v.
func NewMutableID(v int64) *MutableID {
	id := new(MutableID)
	id.v.Store(v)
	return id
}

// Set changes the value.
func (m *MutableID) Set(v int64) { m.v.Store(v) }

// Calls is how many times Value was called on m (not on a copy of it).
func (m *MutableID) Calls() int64 {
	if c, ok := valueCalls.Load(m); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// Value is the current value.
func (m *MutableID) Value() (driver.Value, error) {
	c, _ := valueCalls.LoadOrStore(m, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	return m.v.Load(), nil
}
