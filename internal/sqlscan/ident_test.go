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

func TestTableName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{`users`, "users", true},
		{`public."Users"`, "Users", true},
		{` public . users `, "users", true},
		{`my-view`, "", false},
		{`1abc`, "", false},
		{`t; DROP TABLE t`, "", false},
		{`users u`, "", false},
		{`public.`, "", false},
		{``, "", false},
		{`""`, "", false},
	} {
		got, ok := TableName(PostgreSQL, tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("TableName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := TableName(0, "users"); !ok || got != AllTables {
		t.Errorf("zero Dialect: %q, %v; want AllTables", got, ok)
	}
}
