-- Nodes and leases. Every serve node registers its id and the public half
-- of its checkpoint signing key; a camera's live session holds its lease
-- (one writer per camera), renewed while the session lives. settings
-- holds what every node sharing the catalog must agree on (the store).
-- sessions.node says which node ran a session: crash reconciliation at a
-- node's restart settles only its own.

-- +goose Up
CREATE TABLE nodes (
	id text PRIMARY KEY,
	public_key bytea NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen timestamptz NOT NULL
);
CREATE TABLE leases (
	camera text PRIMARY KEY REFERENCES cameras(id),
	node text NOT NULL,
	session text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE TABLE settings (
	key text PRIMARY KEY,
	value text NOT NULL
);
ALTER TABLE sessions ADD COLUMN node text;

-- +goose Down
ALTER TABLE sessions DROP COLUMN node;
DROP TABLE settings;
DROP TABLE leases;
DROP TABLE nodes;
