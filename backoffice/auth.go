package backoffice

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// ErrUnauthorized is returned for a request without valid credentials;
// callers answer 401 and never say which part was wrong.
var ErrUnauthorized = errors.New("backoffice: not authenticated")

// Principal is who made a request.
type Principal struct {
	Name string
	Role Role
	// csrf and session are set for a login session (cookie): its CSRF
	// token and its id's digest (hex). Bearer tokens have neither.
	csrf, session string
}

// Authorizer tells who made a request: the API-token file, and the staff
// accounts in the catalog (stored API tokens and login sessions).
type Authorizer interface {
	Authenticate(r *http.Request) (Principal, error)
}

// minTokenLen keeps guessable tokens out of the file: 16 characters of a
// random token are at least ~80 bits.
const minTokenLen = 16

// Tokens authenticates API tokens given as `Authorization: Bearer TOKEN`.
// Only each token's SHA-256 is kept: a memory dump does not hand out
// working credentials, and a fixed-size digest compares in constant time.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	who    Principal
}

// LoadTokens reads an API-token file (see ParseTokens). Like the identity,
// a token file others can read is refused.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("api tokens: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("api tokens %s are accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("api tokens %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads lines `NAME ROLE TOKEN` (blank lines and lines
// starting with # are skipped). Names and tokens must be unique.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want NAME ROLE TOKEN, got %d fields", n, len(f))
		}
		role, err := ParseRole(f[1])
		if err != nil && len(f[1]) >= minTokenLen {
			// As long as a token: perhaps the columns are swapped, and the
			// message goes to the log. Never quote a possible secret.
			return nil, fmt.Errorf("line %d: the second field of %s is not a role (roles: operator, reviewer, admin, auditor); the columns are NAME ROLE TOKEN", n, f[0])
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(f[2]) < minTokenLen {
			return nil, fmt.Errorf("line %d: token of %s is shorter than %d characters", n, f[0], minTokenLen)
		}
		if names[f[0]] {
			return nil, fmt.Errorf("line %d: name %s given twice", n, f[0])
		}
		d := sha256.Sum256([]byte(f[2]))
		if digests[d] {
			return nil, fmt.Errorf("line %d: the token of %s is also another name's", n, f[0])
		}
		names[f[0]], digests[d] = true, true
		t.entries = append(t.entries, tokenEntry{digest: d, who: Principal{Name: f[0], Role: role}})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Authenticate implements Authorizer. Every entry is compared, whatever
// matched, so the time taken says nothing about which token came close.
func (t *Tokens) Authenticate(r *http.Request) (Principal, error) {
	tok, ok := bearer(r)
	if !ok {
		return Principal{}, ErrUnauthorized
	}
	d := sha256.Sum256([]byte(tok))
	var who Principal
	found := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			who, found = e.who, 1
		}
	}
	if found == 0 {
		return Principal{}, ErrUnauthorized
	}
	return who, nil
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}
