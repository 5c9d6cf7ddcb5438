package identity

import (
	"testing"
)

func TestFilterMatchesSCIMExpressions(t *testing.T) {
	user := map[string]any{
		"userName": "Ann@Example.com", "displayName": "Ann Lee", "active": true,
		"emails": []any{map[string]any{"value": "ann@example.com"}, map[string]any{"value": "a.lee@corp.io"}},
	}
	cases := []struct {
		filter string
		want   bool
	}{
		{`userName eq "ann@example.com"`, true},
		{`USERNAME EQ "ANN@EXAMPLE.COM"`, true},
		{`userName eq "bob@example.com"`, false},
		{`userName ne "bob@example.com"`, true},
		{`displayName co "lee"`, true},
		{`displayName sw "Ann"`, true},
		{`displayName sw "Lee"`, false},
		{`displayName ew "Lee"`, true},
		{`emails.value eq "a.lee@corp.io"`, true},
		{`emails.value co "nomatch"`, false},
		{`active eq "true"`, true},
		{`externalId pr`, false},
		{`displayName pr`, true},
		{`userName sw "ann" and displayName co "lee"`, true},
		{`userName sw "bob" or displayName co "lee"`, true},
		{`userName sw "bob" or (displayName co "x" and active eq "true")`, false},
		{`not (userName sw "bob")`, true},
		{`displayName eq "Ann \"The\" Lee"`, false},
	}
	lookup := func(name string) []string { return attrValues(user, name) }
	for _, c := range cases {
		f, err := ParseFilter(c.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", c.filter, err)
			continue
		}
		if got := f.Match(lookup); got != c.want {
			t.Errorf("%q matched %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestFilterRejectsMalformedExpressions(t *testing.T) {
	for _, bad := range []string{
		`userName`, `userName xx "a"`, `userName eq`, `"a" eq "b"`, `userName eq "a" and`,
		`(userName eq "a"`, `userName eq "unterminated`, `userName eq "a" extra`,
	} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q) succeeded", bad)
		}
	}
	if f, err := ParseFilter("   "); err != nil || f != nil {
		t.Errorf("empty filter = %v, %v", f, err)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `a co "b" or not (c pr)`, `x[`, `"`, `((`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err == nil && flt != nil {
			flt.Match(func(string) []string { return []string{"v"} })
		}
	})
}
