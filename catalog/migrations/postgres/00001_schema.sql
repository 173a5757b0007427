-- The catalog's schema on PostgreSQL at version 1: the same tables and
-- columns as SQLite's, with times as timestamptz, blobs as bytea, counts
-- and nanoseconds as bigint, and identity columns for the outbox, the
-- audit trail and holds (ids are never reused, as AUTOINCREMENT's are not).
-- Ids and hashes are text, as they are everywhere.

-- +goose Up
CREATE TABLE cameras (
	id text PRIMARY KEY,
	officer text NOT NULL,
	secret_mac bytea NOT NULL,
	created_at timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE TABLE incidents (
	id text PRIMARY KEY,
	camera text NOT NULL REFERENCES cameras(id),
	officer text NOT NULL,
	started_at timestamptz NOT NULL,
	ended_at timestamptz,
	status text NOT NULL,
	head text NOT NULL,
	next_index bigint NOT NULL,
	deleted_at timestamptz
);
CREATE INDEX incidents_camera ON incidents(camera, started_at);
CREATE TABLE sessions (
	id text PRIMARY KEY,
	incident text NOT NULL REFERENCES incidents(id),
	wrapped_key bytea NOT NULL,
	started_at timestamptz NOT NULL,
	ended_at timestamptz
);
CREATE TABLE chunks (
	incident text NOT NULL REFERENCES incidents(id),
	session text NOT NULL REFERENCES sessions(id),
	track text NOT NULL,
	seq bigint NOT NULL,
	object text NOT NULL UNIQUE,
	start_ns bigint NOT NULL,
	end_ns bigint NOT NULL,
	wall timestamptz NOT NULL,
	retain_until timestamptz NOT NULL,
	plain_size bigint NOT NULL,
	cipher_size bigint NOT NULL,
	samples bigint NOT NULL DEFAULT 0,
	video_samples bigint, -- of samples, the video frames
	plain_sha256 text NOT NULL,
	cipher_sha256 text NOT NULL,
	deleted_at timestamptz,
	PRIMARY KEY (session, track, seq)
);
CREATE TABLE manifest (
	incident text NOT NULL REFERENCES incidents(id),
	idx bigint NOT NULL,
	line bytea NOT NULL,
	PRIMARY KEY (incident, idx)
);
CREATE TABLE checkpoints (
	incident text NOT NULL REFERENCES incidents(id),
	idx bigint NOT NULL,
	line bytea NOT NULL,
	anchored integer, -- 1 once its anchor is known to be in the store
	PRIMARY KEY (incident, idx)
);
CREATE INDEX chunks_due ON chunks(retain_until) WHERE deleted_at IS NULL;
CREATE TABLE holds (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	incident text NOT NULL REFERENCES incidents(id),
	reason text NOT NULL,
	reference text NOT NULL,
	placed_by text NOT NULL,
	placed_at timestamptz NOT NULL,
	released_by text,
	released_at timestamptz,
	release_reason text
);
CREATE INDEX holds_active ON holds(incident) WHERE released_at IS NULL;
CREATE TABLE audit (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at timestamptz NOT NULL,
	actor text NOT NULL,
	action text NOT NULL,
	incident text,
	line bytea NOT NULL,
	hash text NOT NULL
);
CREATE TABLE audit_heads (
	idx bigint PRIMARY KEY,
	line bytea NOT NULL
);
CREATE TABLE alerts (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	type text NOT NULL,
	camera text NOT NULL,
	incident text,
	at timestamptz NOT NULL,
	data text NOT NULL
);
CREATE TABLE webhook_deliveries (
	url text PRIMARY KEY,
	delivered bigint NOT NULL,
	attempts integer NOT NULL DEFAULT 0,
	last_attempt_at timestamptz,
	last_error text,
	created_at timestamptz NOT NULL
);
CREATE TABLE intents (
	object text PRIMARY KEY,
	incident text NOT NULL REFERENCES incidents(id),
	session text NOT NULL REFERENCES sessions(id),
	track text NOT NULL,
	seq bigint NOT NULL,
	retain_until timestamptz NOT NULL,
	created timestamptz NOT NULL,
	start_ns bigint NOT NULL,
	end_ns bigint NOT NULL,
	wall timestamptz NOT NULL,
	plain_size bigint NOT NULL,
	cipher_size bigint NOT NULL,
	samples bigint NOT NULL,
	video_samples bigint NOT NULL,
	plain_sha256 text NOT NULL,
	cipher_sha256 text NOT NULL,
	status text NOT NULL DEFAULT 'pending', -- pending, or quarantined at a reconcile
	note text NOT NULL DEFAULT ''
);
CREATE INDEX intents_due ON intents(retain_until);
CREATE TABLE staff (
	name text PRIMARY KEY,
	role text NOT NULL,
	password_hash text NOT NULL,
	disabled integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL,
	changed_at timestamptz NOT NULL
);
CREATE TABLE staff_tokens (
	digest bytea PRIMARY KEY,
	name text NOT NULL REFERENCES staff(name),
	created_at timestamptz NOT NULL,
	revoked_at timestamptz
);
CREATE TABLE staff_sessions (
	digest bytea PRIMARY KEY,
	name text NOT NULL REFERENCES staff(name),
	csrf text NOT NULL,
	created_at timestamptz NOT NULL,
	seen_at timestamptz NOT NULL
);
CREATE TABLE exports (
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
	-- The insertion order, which SQLite keeps as rowid: the tie-break of
	-- two requests at one instant, under the same name in both engines.
	rowid bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	CHECK (approved_by IS NULL OR approved_by <> requested_by)
);
CREATE INDEX exports_requested ON exports(requested_at);
-- The hot queries: one incident's chunks in order, the sessions still
-- running, the incidents not deleted, an incident's alerts by type.
CREATE INDEX chunks_incident ON chunks(incident, wall, seq);
CREATE INDEX sessions_running ON sessions(incident) WHERE ended_at IS NULL;
CREATE INDEX incidents_live ON incidents(started_at) WHERE deleted_at IS NULL;
CREATE INDEX alerts_incident ON alerts(incident, type);
