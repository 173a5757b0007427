-- Redactions: redacted copies of an incident for a subject-access
-- request. Like an export, one person requests (with a reason and the
-- request's case number) and a different admin approves before anything
-- is written; plan is the JSON of what is blurred, blacked out and muted,
-- with a reason for each.

-- +goose Up
CREATE TABLE redactions (
	id text PRIMARY KEY,
	incident text NOT NULL REFERENCES incidents(id),
	reason text NOT NULL,
	reference text NOT NULL,
	requested_by text NOT NULL,
	requested_at timestamptz NOT NULL,
	approved_by text,
	approved_at timestamptz,
	state text NOT NULL,
	error text NOT NULL DEFAULT '',
	finished_at timestamptz,
	plan text NOT NULL,
	-- The insertion order, as SQLite's rowid (see exports).
	rowid bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	CHECK (approved_by IS NULL OR approved_by <> requested_by)
);
CREATE INDEX redactions_requested ON redactions(requested_at);

-- +goose Down
DROP TABLE redactions;
