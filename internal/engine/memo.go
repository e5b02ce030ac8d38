package engine

import (
	"container/heap"
	"container/list"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/gormflight/gormflight/internal/rowcodec"
)

// memo keeps the most recently decoded entries of this instance, by key,
// with the head of the stored value they were decoded from (its stamp and
// meta, whose tag is unique to one stored value: see storedFormat). A hit
// still asks Redis (freshness is decided there, by the generations), but
// only for as many bytes as the remembered head: when they are equal, the
// stored value is the one the memo decoded, and its entry is served
// without fetching or decoding the rest. For a hot key that is most of a
// hit's cost, and the memo can never answer with rows Redis does not hold.
//
// Entries are shared read-only by every caller they are replayed to (the
// replay driver copies []byte values), as a flight's result already is.
//
// The memo is bounded by the memory it holds (Config.MemoSize): for each
// item the head of the stored value, the decoded rows with their boxed
// values and column metadata, the key and the memo's own bookkeeping, as
// memoWeight estimates them from Go's allocation sizes (never below them,
// which TestMemoMemoryBound checks with runtime.MemStats). It evicts the
// least recently used item, and an item leaves when its entry expires in
// Redis, even if nothing reads the memo again: a timer sweeps the items
// whose expiry has passed.
type memo struct {
	limit int // bytes; <= 0 disables the memo

	mu      sync.Mutex
	size    int
	order   *list.List // of *memoItem, most recently used first
	byKey   map[string]*list.Element
	expiry  memoExpiry  // the same items, soonest expiry first
	sweeper *time.Timer // fires at the soonest expiry; nil until needed
	closed  bool
	now     func() time.Time // time.Now; tests move it
}

type memoItem struct {
	key  string
	head string // of the stored value the entry was decoded from
	// noRefresh: until then this instance does not refresh this stored
	// value: it started a refresh of it (claimed, until released), or
	// found another instance refreshing it, whose refresh may fail.
	noRefresh time.Time
	entry     *rowcodec.Entry
	weight    int       // memoWeight of the item
	expires   time.Time // when Redis drops the entry
	index     int       // in memo.expiry
}

func newMemo(limit int) *memo {
	return &memo{limit: limit, order: list.New(), byKey: make(map[string]*list.Element), now: time.Now}
}

// head returns the head of key's remembered stored value.
func (m *memo) head(key string) (string, bool) {
	if m.limit <= 0 {
		return "", false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		return el.Value.(*memoItem).head, true
	}
	return "", false
}

// get returns the entry remembered for key when it was decoded from the
// stored value whose head is head, and nil otherwise. expires is when Redis
// drops the stored value.
func (m *memo) get(key, head string, expires time.Time) *rowcodec.Entry {
	if m.limit <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byKey[key]
	if !ok {
		return nil
	}
	it := el.Value.(*memoItem)
	if it.head != head {
		return nil
	}
	m.order.MoveToFront(el)
	// Stored again with the same value (each lookup's reading of the expiry
	// differs by its round trip: ignore that).
	if expires.Sub(it.expires) > memoSweepSlack {
		it.expires = expires
		heap.Fix(&m.expiry, it.index)
		m.arm()
	}
	return it.entry
}

// claimRefresh reports whether this instance may refresh key's stored value
// whose head is head, and marks it claimed: once per stored value, so that
// the hits on a key another instance is refreshing do not each try its
// lock. Without the value in the memo it always reports true.
func (m *memo) claimRefresh(key, head string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byKey[key]
	if !ok {
		return true
	}
	it := el.Value.(*memoItem)
	if it.head != head {
		return true
	}
	if m.now().Before(it.noRefresh) {
		return false
	}
	it.noRefresh = claimed
	return true
}

// claimed is the noRefresh of a stored value whose refresh runs: no time
// comes after it.
var claimed = time.Unix(1<<62, 0)

// releaseRefresh undoes claimRefresh after a delay: at once (0) for a
// refresh that failed, later for one that found another instance holding
// the key's lock, whose refresh may fail too. A later hit may then try
// again.
func (m *memo) releaseRefresh(key, head string, after time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok && el.Value.(*memoItem).head == head {
		it := el.Value.(*memoItem)
		it.noRefresh = time.Time{}
		if after > 0 {
			it.noRefresh = m.now().Add(after)
		}
	}
}

// decode returns the entry encoded in body, from the stored value of key
// whose head is head: from the memo when it decoded that value before.
// expires is when Redis drops the stored value; the zero time keeps the
// entry out of the memo.
func (m *memo) decode(key, head string, body []byte, expires time.Time) (*rowcodec.Entry, error) {
	if ent := m.get(key, head, expires); ent != nil {
		return ent, nil
	}
	ent, err := rowcodec.Decode(body)
	if err != nil {
		m.forget(key)
		return nil, err
	}
	m.remember(key, head, ent, expires)
	return ent, nil
}

func (m *memo) remember(key, head string, ent *rowcodec.Entry, expires time.Time) {
	if m.limit <= 0 {
		return
	}
	weight := memoWeight(key, head, ent)
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.remove(el) // an older value: no longer what Redis holds
	}
	if m.closed || weight > m.limit/4 || !m.now().Before(expires) {
		return // one entry must not evict a quarter of the others
	}
	// The key may be a slice of a longer string (a query's three names
	// share one): kept alone, it holds only the bytes its weight counts.
	key = strings.Clone(key)
	it := &memoItem{key: key, head: head, entry: ent, weight: weight, expires: expires}
	m.byKey[key] = m.order.PushFront(it)
	heap.Push(&m.expiry, it)
	m.size += weight
	for m.size > m.limit {
		m.remove(m.order.Back())
	}
	m.arm()
}

func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.remove(el)
	}
}

// remove drops the item of el; m.mu is held.
func (m *memo) remove(el *list.Element) {
	it := el.Value.(*memoItem)
	m.order.Remove(el)
	delete(m.byKey, it.key)
	heap.Remove(&m.expiry, it.index)
	m.size -= it.weight
	if len(m.byKey) == 0 {
		m.byKey = make(map[string]*list.Element) // a map never shrinks
	}
}

// arm sets the sweeper to fire at the soonest expiry; m.mu is held.
func (m *memo) arm() {
	if len(m.expiry) == 0 || m.closed {
		return
	}
	d := m.expiry[0].expires.Sub(m.now()) + memoSweepSlack
	if m.sweeper == nil {
		m.sweeper = time.AfterFunc(d, m.sweep)
		return
	}
	m.sweeper.Reset(d)
}

// memoSweepSlack lets one sweep drop the items expiring close together.
const memoSweepSlack = 250 * time.Millisecond

// sweep drops the items whose entries have expired in Redis.
func (m *memo) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for len(m.expiry) > 0 && !m.expiry[0].expires.After(now) {
		m.remove(m.byKey[m.expiry[0].key])
	}
	m.arm()
}

// close empties the memo and stops its sweeper.
func (m *memo) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.sweeper != nil {
		m.sweeper.Stop()
	}
	m.order.Init()
	m.byKey = make(map[string]*list.Element)
	m.expiry = nil
	m.size = 0
}

// len reports how many entries the memo holds; tests use it.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.byKey)
}

// memoExpiry is a heap of the memo's items by expiry (container/heap).
type memoExpiry []*memoItem

func (h memoExpiry) Len() int           { return len(h) }
func (h memoExpiry) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h memoExpiry) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *memoExpiry) Push(x any) {
	it := x.(*memoItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *memoExpiry) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// memoItemOverhead is the memo's bookkeeping per item: the item, its list
// element, its map slot (at the map's load factor) and its heap slot.
const memoItemOverhead = int(unsafe.Sizeof(memoItem{})) + int(unsafe.Sizeof(list.Element{})) + 64 + 16

// memoWeight estimates the memory an item holds, rounding each allocation
// up as Go's allocator does.
func memoWeight(key, head string, e *rowcodec.Entry) int {
	return memoItemOverhead + rowcodec.AllocSize(len(key)) + rowcodec.AllocSize(len(head)) + e.MemSize()
}
