package corpus

import (
	"slices"
	"testing"
)

// The analyser's tests hold the statements; a string of this file is
// found too.
func TestTestStrings(t *testing.T) {
	got, err := TestStrings("..")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 500 || !slices.Contains(got, "SELECT * FROM users") {
		t.Errorf("%d strings from the analyser's tests, SELECT * FROM users among them: %v", len(got), slices.Contains(got, "SELECT * FROM users"))
	}
	own, err := TestStrings(".")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(own, "a string of this file") {
		t.Errorf("TestStrings(.) = %q", own)
	}
}

var _ = "a string of this file"
