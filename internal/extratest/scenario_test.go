package extratest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/gormflight/gormflight/observe"
)

// Play's statements have the outcomes it tells, in its order, and only
// its failing read fails.
func TestPlay(t *testing.T) {
	var mu sync.Mutex
	var got []observe.Event
	obs := observe.ObserverFunc(func(_ context.Context, ev observe.Event) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ev)
	})
	p := Play(t, context.Background(), New(t), obs)
	mu.Lock()
	defer mu.Unlock()
	outcomes := make([]observe.Outcome, len(got))
	for i, ev := range got {
		outcomes[i] = ev.Outcome
	}
	if len(outcomes) == 6 && outcomes[2] == observe.Wait {
		outcomes[2], outcomes[3] = outcomes[3], outcomes[2] // step 2 ends in either order
	}
	if !slices.Equal(outcomes, p.Outcomes) {
		t.Fatalf("observed %v, Play tells %v", outcomes, p.Outcomes)
	}
	for i, ev := range got {
		if failed := i == len(got)-1; (ev.Err != nil) != failed {
			t.Errorf("event %d (%s) has Err %v", i, ev.Outcome, ev.Err)
		}
	}
}
