// Package backoffice is the staff side of a node: the HTTP API and web UI
// for staff accounts, sessions and tokens, the alert outbox delivered as
// server-sent events and signed webhooks, incidents and their timelines,
// reason-bound footage views, legal holds and two-person exports. Who may
// do what is decided here, by role, from one table (matrix.go). It reads
// what the pipeline wrote, through the catalog, the store and review, and
// never imports the pipeline's packages.
package backoffice

import (
	"fmt"
	"strings"
)

// Role is a staff role. What a person may do follows from their role
// alone, through the matrix, so duties stay separated by construction.
type Role string

// The staff roles.
const (
	RoleOperator Role = "operator" // control room: alerts and incident metadata, never footage
	RoleReviewer Role = "reviewer" // footage, each time with a reason
	RoleAdmin    Role = "admin"    // cameras, staff, holds, exports
	RoleAuditor  Role = "auditor"  // the audit trail only
)

// Roles lists every role, in the order they are documented.
var Roles = []Role{RoleOperator, RoleReviewer, RoleAdmin, RoleAuditor}

// ParseRole checks that s names a role.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (roles: operator, reviewer, admin, auditor)", s)
}

// alertRules is the one table saying which alert types each role
// receives. A pattern is an exact type, "prefix.*" for a family, or "*".
// An auditor gets what belongs in an audit (holds and retention
// deletions), not the control room's live feed; a role missing here
// receives nothing.
var alertRules = map[Role][]string{
	RoleOperator: {"*"},
	RoleReviewer: {"*"},
	RoleAdmin:    {"*"},
	RoleAuditor:  {"hold.*", "retention.deleted"},
}

// MayReceive reports whether a person with role may receive alerts of typ.
func MayReceive(role Role, typ string) bool {
	for _, p := range alertRules[role] {
		if p == "*" || p == typ || strings.HasSuffix(p, ".*") && strings.HasPrefix(typ, p[:len(p)-1]) {
			return true
		}
	}
	return false
}
