package backoffice

import (
	"fmt"
	"sort"
	"strings"
)

// Action is something a backoffice route does, the unit of authorisation.
type Action string

// The actions. ActionPublic is the login form alone: it needs no one.
const (
	ActionPublic        Action = "public"
	ActionSession       Action = "session" // see and end one's own session
	ActionAlertsRead    Action = "alerts.read"
	ActionIncidentsRead Action = "incidents.read" // metadata, never footage
	ActionFootageView   Action = "footage.view"
	ActionLiveView      Action = "live.view" // watch a recording camera live (serve --live-view)
	ActionHoldPlace     Action = "hold.place"
	ActionHoldRelease   Action = "hold.release"
	ActionExportRequest Action = "export.request"
	ActionExportApprove Action = "export.approve"
	// A redacted copy for a subject-access request: detecting faces and
	// requesting one, then a second admin's approval.
	ActionRedactionRequest Action = "redaction.request"
	ActionRedactionApprove Action = "redaction.approve"
	ActionCamerasManage    Action = "cameras.manage"
	ActionUsersManage      Action = "users.manage"
	ActionAuditRead        Action = "audit.read"
)

// matrix is THE authorisation table, in one place so that who may see
// footage can be reviewed at a glance: the roles that may do each action.
// Every route names one of these actions (Service.handle refuses anything
// else), so a route cannot exist without a rule. What an auditor receives
// on the alert feed is narrowed further by alertRules.
var matrix = map[Action][]Role{
	ActionPublic:           Roles,
	ActionSession:          Roles,
	ActionAlertsRead:       Roles,
	ActionIncidentsRead:    {RoleOperator, RoleReviewer, RoleAdmin},
	ActionFootageView:      {RoleReviewer},
	ActionLiveView:         {RoleOperator},
	ActionHoldPlace:        {RoleAdmin},
	ActionHoldRelease:      {RoleAdmin},
	ActionExportRequest:    {RoleAdmin},
	ActionExportApprove:    {RoleAdmin},
	ActionRedactionRequest: {RoleReviewer, RoleAdmin},
	ActionRedactionApprove: {RoleAdmin},
	ActionCamerasManage:    {RoleAdmin},
	ActionUsersManage:      {RoleAdmin},
	ActionAuditRead:        {RoleAuditor},
}

// Allowed reports whether role may do action.
func Allowed(role Role, action Action) bool {
	for _, r := range matrix[action] {
		if r == role {
			return true
		}
	}
	return false
}

// Actions lists every action in the table, sorted.
func Actions() []Action {
	out := make([]Action, 0, len(matrix))
	for a := range matrix {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// MatrixMarkdown renders the table for README.md (a test keeps README's
// copy equal to it).
func MatrixMarkdown() string {
	var b strings.Builder
	b.WriteString("| action |")
	for _, r := range Roles {
		fmt.Fprintf(&b, " %s |", r)
	}
	b.WriteString("\n|---|")
	for range Roles {
		b.WriteString(":-:|")
	}
	b.WriteString("\n")
	for _, a := range Actions() {
		if a == ActionPublic {
			continue
		}
		fmt.Fprintf(&b, "| `%s` |", a)
		for _, r := range Roles {
			if Allowed(r, a) {
				b.WriteString(" ✓ |")
			} else {
				b.WriteString("   |")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
