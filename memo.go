package gormflight

import (
	"bytes"
	"container/list"
	"sync"
)

// memo keeps the most recently decoded entries of this instance, by key,
// with the bytes they were decoded from. A hit still fetches the entry from
// Redis (freshness is decided there, by the generations), but when the
// fetched bytes equal the remembered ones the entry is not decoded again:
// for a hot key that is most of a hit's CPU. Equal bytes decode to equal
// entries, so the memo can never answer with rows Redis does not hold.
//
// Entries are shared read-only by every caller they are replayed to (the
// replay driver copies []byte values), as a flight's result already is.
//
// The memo is bounded by the encoded size of what it keeps (Config.MemoSize);
// it evicts the least recently used entry.
type memo struct {
	limit int // bytes; <= 0 disables the memo

	mu    sync.Mutex
	size  int
	order *list.List // of *memoItem, most recently used first
	byKey map[string]*list.Element
}

type memoItem struct {
	key   string
	data  []byte // the encoded entry, as fetched
	entry *entry
}

func newMemo(limit int) *memo {
	return &memo{limit: limit, order: list.New(), byKey: make(map[string]*list.Element)}
}

// decode returns the entry encoded in data, the stored value of key, from
// the memo when data is what it decoded last time. data must not be
// modified afterwards: the memo may keep it.
func (m *memo) decode(key string, data []byte) (*entry, error) {
	if m.limit <= 0 {
		return decodeEntry(data)
	}
	m.mu.Lock()
	if el, ok := m.byKey[key]; ok {
		it := el.Value.(*memoItem)
		if bytes.Equal(it.data, data) {
			m.order.MoveToFront(el)
			m.mu.Unlock()
			return it.entry, nil
		}
	}
	m.mu.Unlock()

	ent, err := decodeEntry(data)
	if err != nil {
		m.forget(key)
		return nil, err
	}
	m.remember(key, data, ent)
	return ent, nil
}

func (m *memo) remember(key string, data []byte, ent *entry) {
	if len(data) > m.limit/4 {
		return // one entry must not evict a quarter of the others
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		it := el.Value.(*memoItem)
		m.size += len(data) - len(it.data)
		it.data, it.entry = data, ent
		m.order.MoveToFront(el)
	} else {
		m.byKey[key] = m.order.PushFront(&memoItem{key: key, data: data, entry: ent})
		m.size += len(data)
	}
	for m.size > m.limit {
		el := m.order.Back()
		it := el.Value.(*memoItem)
		m.order.Remove(el)
		delete(m.byKey, it.key)
		m.size -= len(it.data)
	}
}

func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.order.Remove(el)
		delete(m.byKey, key)
		m.size -= len(el.Value.(*memoItem).data)
	}
}

// len reports how many entries the memo holds; tests use it.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byKey)
}
