package observe

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

// snake returns a Go field name in snake case: "LockTakeovers" is
// "lock_takeovers".
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// Counters names every field of Stats once, in order, in snake case, and
// reads each from its own field.
func TestCountersCoverStats(t *testing.T) {
	var s Stats
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1)) // a value of its own per field
	}
	cs := s.Counters()
	if len(cs) != v.NumField() {
		t.Fatalf("Counters returns %d counts, Stats has %d fields", len(cs), v.NumField())
	}
	for i, c := range cs {
		f := v.Type().Field(i)
		if c.Name != snake(f.Name) || c.Value != uint64(i+1) || c.Help == "" {
			t.Errorf("count %d is %+v, want name %q, value %d and a help text", i, c, snake(f.Name), i+1)
		}
	}
}

func TestOutcomeNames(t *testing.T) {
	want := "hit local_hit shared wait load fallback bypass"
	var names []string
	for _, o := range Outcomes() {
		names = append(names, o.String())
	}
	if got := strings.Join(names, " "); got != want {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	if Outcome(0).String() != "unknown" || Outcome(200).String() != "unknown" {
		t.Errorf("outcomes out of range are %q and %q, want unknown", Outcome(0), Outcome(200))
	}
}

// Join passes each event to every observer, and skips nil ones.
func TestJoin(t *testing.T) {
	var got []string
	rec := func(name string) Observer {
		return ObserverFunc(func(_ context.Context, ev Event) { got = append(got, name+":"+ev.Outcome.String()) })
	}
	o := Join(rec("a"), nil, rec("b"))
	o.Observe(context.Background(), Event{Outcome: Load})
	o.Observe(context.Background(), Event{Outcome: Hit})
	if s := strings.Join(got, " "); s != "a:load b:load a:hit b:hit" {
		t.Errorf("Join delivered %q", s)
	}
}
