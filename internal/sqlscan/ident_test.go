package sqlscan

import (
	"strings"
	"testing"
)

func TestNormTable(t *testing.T) {
	cases := []struct{ in, want string }{
		{`users`, "users"},
		{`Users`, "users"},
		{`"Users"`, "Users"},
		{`public.users`, "users"},
		{`"public"."Users"`, "Users"},
		{`public."Users"`, "Users"},
		{`"public".USERS`, "users"},
		{`"a.b"`, "a.b"},
		{`"a"".b"`, `a".b`},
		{`db.public.t`, "t"},
		{` public . users `, "users"},
		{`ÄÖ_x`, "ÄÖ_x"},
		{`U&"\0041b"`, "Ab"},
		{strings.Repeat("x", 70), strings.Repeat("x", 63)},
		{`"` + strings.Repeat("é", 40) + `"`, strings.Repeat("é", 31)}, // 62 bytes: the 32nd é would cross 63
		{``, ""},
		{`(x)`, ""},
		{`""`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := NormTable(PostgreSQL, tc.in); got != tc.want {
				t.Errorf("NormTable(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
