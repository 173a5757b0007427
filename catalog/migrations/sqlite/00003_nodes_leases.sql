-- Nodes and leases. Every serve node registers its id and the public half
-- of its checkpoint signing key; a camera's live session holds its lease
-- (one writer per camera), renewed while the session lives. settings
-- holds what every node sharing the catalog must agree on (the store).
-- sessions.node says which node ran a session: crash reconciliation at a
-- node's restart settles only its own.

-- +goose Up
CREATE TABLE nodes (
	id TEXT PRIMARY KEY,
	public_key BLOB NOT NULL,
	first_seen TEXT NOT NULL,
	last_seen TEXT NOT NULL
);
CREATE TABLE leases (
	camera TEXT PRIMARY KEY REFERENCES cameras(id),
	node TEXT NOT NULL,
	session TEXT NOT NULL,
	expires_at TEXT NOT NULL
);
CREATE TABLE settings (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
ALTER TABLE sessions ADD COLUMN node TEXT;

-- +goose Down
ALTER TABLE sessions DROP COLUMN node;
DROP TABLE settings;
DROP TABLE leases;
DROP TABLE nodes;
