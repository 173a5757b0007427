package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errs bytes.Buffer
	code := run(args, &out, &errs)
	return out.String(), errs.String(), code
}

// TestAuditVerifyCLI: the real commands sign and anchor the trail's head;
// `audit verify` passes an untouched trail (text and JSON), and after the
// last rows are deleted from catalog.db it exits 1 saying which records
// the tail lost; an edited row is named; bad arguments exit 2.
func TestAuditVerifyCLI(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if _, errs, code := runCmd(t, "keygen", "--data", data); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	if out, errs, code := runCmd(t, "audit", "anchor", "--data", data); code != 0 || !strings.Contains(out, "empty") {
		t.Fatalf("anchor of an empty trail: %d %q %s", code, out, errs)
	}
	for _, name := range []string{"ann", "bob", "cid"} {
		if _, errs, code := runUser(t, "a long enough password\n", "add", name, "--role", "auditor", "--data", data, "--by", "root"); code != 0 {
			t.Fatalf("user add %s: %d %s", name, code, errs)
		}
	}
	if _, errs, code := runUser(t, "", "disable", "bob", "--data", data, "--by", "root"); code != 0 {
		t.Fatalf("user disable: %d %s", code, errs)
	}
	out, errs, code := runCmd(t, "audit", "anchor", "--data", data)
	if code != 0 || !strings.Contains(out, "signed at record 4") || !strings.Contains(out, "audit/heads/000000000004.json") {
		t.Fatalf("audit anchor: %d %q %s", code, out, errs)
	}
	out, errs, code = runCmd(t, "audit", "verify", "--data", data)
	if code != 0 || !strings.Contains(out, "4 records, 1 signed heads in the catalog, 1 anchored in the store, signed up to record 4: OK") {
		t.Fatalf("audit verify: %d %q %s", code, out, errs)
	}
	out, _, code = runCmd(t, "audit", "verify", "--json", "--data", data)
	var rep struct {
		Records  int
		Anchored int
		Problems []any
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Records != 4 || rep.Anchored != 1 || rep.Problems == nil {
		t.Fatalf("audit verify --json: %d %v %s", code, err, out)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit SET line = replace(line, 'ann', 'eve') WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	if out, _, code = runCmd(t, "audit", "verify", "--data", data); code != 1 || !strings.Contains(out, "FAIL record 1: edited") {
		t.Fatalf("verify after an edit: %d %q", code, out)
	}
	if _, err := db.Exec(`DELETE FROM audit WHERE id >= 3`); err != nil {
		t.Fatal(err)
	}
	out, _, code = runCmd(t, "audit", "verify", "--json", "--data", data)
	if code != 1 || !strings.Contains(out, "tail truncated: records 3..4 missing") {
		t.Fatalf("verify --json after truncation: %d %q", code, out)
	}
	for _, bad := range [][]string{{"audit", "bogus"}, {"audit", "verify", "extra"}, {"audit", "--nope"}} {
		if out, _, code := runCmd(t, append(bad, "--data", data)...); code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want 2", bad, code, out)
		}
	}
}
