package backoffice

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzParseTokens: any API-token file is accepted or refused without a
// panic. A refusal never quotes a token (it goes to the log at start-up):
// no field after a line's name, of a token's length, is in the message.
// An accepted file authenticates every line's token as its name and role.
func FuzzParseTokens(f *testing.F) {
	for _, s := range []string{
		"alice operator 0123456789abcdef0123\nbob auditor fedcba9876543210fedc\n",
		"# comment\n\n  carol admin   aaaaaaaaaaaaaaaaaaaa  \n",
		"alice operator short\n", "alice 0123456789abcdef0123 operator\n", "alice operator a b\n",
		"alice operator 0123456789abcdef0123\nalice admin 0123456789abcdef9999\n",
		"alice operator 0123456789abcdef0123\nbob admin 0123456789abcdef0123\n",
		strings.Repeat("x", 70000) + "\n", "\xff\xfe operator 0123456789abcdef0123\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, file string) {
		tk, err := ParseTokens(strings.NewReader(file))
		var lines [][]string
		for _, l := range strings.Split(file, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				lines = append(lines, strings.Fields(l))
			}
		}
		if err != nil {
			names := map[string]bool{}
			for _, fs := range lines {
				names[fs[0]] = true
			}
			for _, fs := range lines {
				for _, v := range fs[1:] {
					if len(v) >= minTokenLen && !names[v] && strings.Contains(err.Error(), v) {
						t.Fatalf("error quotes a secret field %q: %v", v, err)
					}
				}
			}
			return
		}
		if tk.Len() != len(lines) {
			t.Fatalf("%d tokens from %d lines", tk.Len(), len(lines))
		}
		for _, fs := range lines {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+fs[2])
			who, err := tk.Authenticate(r)
			if err != nil || who.Name != fs[0] || string(who.Role) != fs[1] {
				// A token with characters a header cannot carry is not a
				// usable token either way.
				if r.Header.Get("Authorization") == "Bearer "+fs[2] && strings.TrimSpace(fs[2]) == fs[2] {
					t.Fatalf("token of %s: %+v, %v", fs[0], who, err)
				}
			}
		}
	})
}
