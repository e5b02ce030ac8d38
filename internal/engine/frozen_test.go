package engine

import (
	"database/sql"
	"testing"
	"time"
)

// A refresh ahead of expiry runs its query after the caller returned: only
// with arguments that cannot change meanwhile, copied.
func TestFrozenArgs(t *testing.T) {
	b := []byte("abc")
	at := time.Now()
	got, ok := frozenArgs([]any{nil, 1, int64(2), uint8(3), 1.5, true, "s", at, b})
	if !ok {
		t.Fatal("plain values refused")
	}
	b[0] = 'X'
	if string(got[8].([]byte)) != "abc" || got[1] != 1 || got[6] != "s" || !got[7].(time.Time).Equal(at) {
		t.Errorf("frozen %v", got)
	}
	type userID int64
	s := "p"
	for _, arg := range []any{&s, []int{1}, map[string]int{}, userID(1), sql.NullString{String: "v", Valid: true}} {
		if _, ok := frozenArgs([]any{1, arg}); ok {
			t.Errorf("%T (%v) accepted: it could change, or its value depends on a method", arg, arg)
		}
	}
	if got, ok := frozenArgs(nil); !ok || got != nil {
		t.Errorf("no arguments: %v, %v", got, ok)
	}
}
