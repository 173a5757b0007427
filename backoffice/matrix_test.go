package backoffice

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestREADMEMatrix: README.md prints the matrix exactly as the code has it.
func TestREADMEMatrix(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), MatrixMarkdown()) {
		t.Fatalf("README.md's authorisation matrix differs from backoffice/matrix.go; it should read:\n%s", MatrixMarkdown())
	}
}

// TestRouteNeedsRule: a route whose action is not in the matrix cannot be
// registered.
func TestRouteNeedsRule(t *testing.T) {
	s := &Service{}
	for _, a := range []Action{"", "footage.delete"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("action %q: registered without a rule", a)
				}
			}()
			s.handle(http.NewServeMux(), "GET /api/v1/x", a, nil)
		}()
	}
	if len(s.routes) != 0 {
		t.Fatalf("routes %v registered", s.routes)
	}
	// The separation of duties the matrix exists for: operators never see
	// footage, and auditors, who check everyone else, can only read the
	// audit trail.
	if Allowed(RoleOperator, ActionFootageView) || !Allowed(RoleReviewer, ActionFootageView) || Allowed(RoleAdmin, ActionFootageView) {
		t.Error("footage.view must be the reviewer's alone")
	}
	// A redacted copy: requested by a reviewer or an admin, approved by an
	// admin only (a different one, which the catalog enforces).
	for _, r := range Roles {
		if Allowed(r, ActionRedactionRequest) != (r == RoleReviewer || r == RoleAdmin) {
			t.Errorf("%s: redaction.request %v", r, Allowed(r, ActionRedactionRequest))
		}
		if Allowed(r, ActionRedactionApprove) != (r == RoleAdmin) {
			t.Errorf("%s: redaction.approve %v", r, Allowed(r, ActionRedactionApprove))
		}
	}
	for _, a := range Actions() {
		if a != ActionPublic && a != ActionSession && a != ActionAlertsRead && a != ActionAuditRead && Allowed(RoleAuditor, a) {
			t.Errorf("auditor may %s", a)
		}
	}
}
