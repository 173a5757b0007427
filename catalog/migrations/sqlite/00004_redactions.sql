-- Redactions: redacted copies of an incident for a subject-access
-- request. Like an export, one person requests (with a reason and the
-- request's case number) and a different admin approves before anything
-- is written; plan is the JSON of what is blurred, blacked out and muted,
-- with a reason for each.

-- +goose Up
CREATE TABLE redactions (
	id TEXT PRIMARY KEY,
	incident TEXT NOT NULL REFERENCES incidents(id),
	reason TEXT NOT NULL,
	reference TEXT NOT NULL,
	requested_by TEXT NOT NULL,
	requested_at TEXT NOT NULL,
	approved_by TEXT,
	approved_at TEXT,
	state TEXT NOT NULL,
	error TEXT NOT NULL DEFAULT '',
	finished_at TEXT,
	plan TEXT NOT NULL,
	CHECK (approved_by IS NULL OR approved_by <> requested_by)
);
CREATE INDEX redactions_requested ON redactions(requested_at);

-- +goose Down
DROP TABLE redactions;
