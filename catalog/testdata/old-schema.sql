-- The catalog's schema at version 1 (as today's code left it). Kept as a
-- test fixture: a catalog made before migrations existed, with a few rows,
-- which Open must adopt and upgrade in place.
CREATE TABLE IF NOT EXISTS cameras (
	id TEXT PRIMARY KEY,
	officer TEXT NOT NULL,
	secret_mac BLOB NOT NULL,
	created_at TEXT NOT NULL,
	revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS incidents (
	id TEXT PRIMARY KEY,
	camera TEXT NOT NULL REFERENCES cameras(id),
	officer TEXT NOT NULL,
	started_at TEXT NOT NULL,
	ended_at TEXT,
	status TEXT NOT NULL,
	head TEXT NOT NULL,
	next_index INTEGER NOT NULL,
	deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS incidents_camera ON incidents(camera, started_at);
CREATE TABLE IF NOT EXISTS sessions (
	id TEXT PRIMARY KEY,
	incident TEXT NOT NULL REFERENCES incidents(id),
	wrapped_key BLOB NOT NULL,
	started_at TEXT NOT NULL,
	ended_at TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
	incident TEXT NOT NULL REFERENCES incidents(id),
	session TEXT NOT NULL REFERENCES sessions(id),
	track TEXT NOT NULL,
	seq INTEGER NOT NULL,
	object TEXT NOT NULL UNIQUE,
	start_ns INTEGER NOT NULL,
	end_ns INTEGER NOT NULL,
	wall TEXT NOT NULL,
	retain_until TEXT NOT NULL,
	plain_size INTEGER NOT NULL,
	cipher_size INTEGER NOT NULL,
	samples INTEGER NOT NULL DEFAULT 0,
	video_samples INTEGER, -- of samples, the video frames; NULL in catalogs older than the column
	plain_sha256 TEXT NOT NULL,
	cipher_sha256 TEXT NOT NULL,
	deleted_at TEXT,
	PRIMARY KEY (session, track, seq)
);
CREATE TABLE IF NOT EXISTS manifest (
	incident TEXT NOT NULL REFERENCES incidents(id),
	idx INTEGER NOT NULL,
	line BLOB NOT NULL,
	PRIMARY KEY (incident, idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
	incident TEXT NOT NULL REFERENCES incidents(id),
	idx INTEGER NOT NULL,
	line BLOB NOT NULL,
	anchored INTEGER, -- 1 once its anchor is known to be in the store; NULL in catalogs older than the column
	PRIMARY KEY (incident, idx)
);
CREATE INDEX IF NOT EXISTS chunks_due ON chunks(retain_until) WHERE deleted_at IS NULL;
CREATE TABLE IF NOT EXISTS holds (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	incident TEXT NOT NULL REFERENCES incidents(id),
	reason TEXT NOT NULL,
	reference TEXT NOT NULL,
	placed_by TEXT NOT NULL,
	placed_at TEXT NOT NULL,
	released_by TEXT,
	released_at TEXT,
	release_reason TEXT
);
CREATE INDEX IF NOT EXISTS holds_active ON holds(incident) WHERE released_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	at TEXT NOT NULL,
	actor TEXT NOT NULL,
	action TEXT NOT NULL,
	incident TEXT,
	line BLOB NOT NULL,
	hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_heads (
	idx INTEGER PRIMARY KEY,
	line BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	type TEXT NOT NULL,
	camera TEXT NOT NULL,
	incident TEXT,
	at TEXT NOT NULL,
	data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	url TEXT PRIMARY KEY,
	delivered INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_attempt_at TEXT,
	last_error TEXT,
	created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
	object TEXT PRIMARY KEY,
	incident TEXT NOT NULL REFERENCES incidents(id),
	session TEXT NOT NULL REFERENCES sessions(id),
	track TEXT NOT NULL,
	seq INTEGER NOT NULL,
	retain_until TEXT NOT NULL,
	created TEXT NOT NULL,
	start_ns INTEGER NOT NULL,
	end_ns INTEGER NOT NULL,
	wall TEXT NOT NULL,
	plain_size INTEGER NOT NULL,
	cipher_size INTEGER NOT NULL,
	samples INTEGER NOT NULL,
	video_samples INTEGER NOT NULL,
	plain_sha256 TEXT NOT NULL,
	cipher_sha256 TEXT NOT NULL,
	status TEXT NOT NULL DEFAULT 'pending', -- pending, or quarantined at a reconcile
	note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS intents_due ON intents(retain_until);
CREATE TABLE IF NOT EXISTS staff (
	name TEXT PRIMARY KEY,
	role TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	disabled INTEGER NOT NULL DEFAULT 0,
	created_at TEXT NOT NULL,
	changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staff_tokens (
	digest BLOB PRIMARY KEY,
	name TEXT NOT NULL REFERENCES staff(name),
	created_at TEXT NOT NULL,
	revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS staff_sessions (
	digest BLOB PRIMARY KEY,
	name TEXT NOT NULL REFERENCES staff(name),
	csrf TEXT NOT NULL,
	created_at TEXT NOT NULL,
	seen_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exports (
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
	CHECK (approved_by IS NULL OR approved_by <> requested_by)
);
CREATE INDEX IF NOT EXISTS exports_requested ON exports(requested_at);
INSERT INTO cameras VALUES('cam1', 'officer one', X'6d6163', '2026-11-27T10:00:00.000000000Z', NULL);
INSERT INTO incidents VALUES('inc-old', 'cam1', 'officer one', '2026-11-27T10:00:00.000000000Z', '2026-11-27T10:05:00.000000000Z',
	'closed', 'genesis-head', 2, NULL);
INSERT INTO sessions VALUES('s-old', 'inc-old', X'6b6579', '2026-11-27T10:00:00.000000000Z', '2026-11-27T10:05:00.000000000Z');
INSERT INTO chunks VALUES('inc-old', 's-old', 'original', 1, 'inc-old/s-old/original/000001', 0, 2000000000,
	'2026-11-27T10:00:00.000000000Z', '2026-12-27T10:00:00.000000000Z', 1000, 1100, 60, 48, 'plainhash', 'cipherhash', NULL);
INSERT INTO manifest VALUES('inc-old', 0, X'7b7d');
INSERT INTO manifest VALUES('inc-old', 1, X'7b7d');
INSERT INTO checkpoints VALUES('inc-old', 1, X'7b7d', 1);
INSERT INTO audit(at, actor, action, incident, line, hash) VALUES('2026-11-27T10:00:00.000000000Z', 'camvault', 'camera.add', '', X'7b7d', 'h1');
INSERT INTO alerts(type, camera, incident, at, data) VALUES('incident.started', 'cam1', 'inc-old', '2026-11-27T10:00:00.000000000Z', '{}');
INSERT INTO webhook_deliveries VALUES('https://hooks.example/', 1, 0, NULL, NULL, '2026-11-27T10:00:00.000000000Z');
INSERT INTO staff VALUES('ann', 'admin', 'hash', 0, '2026-11-27T10:00:00.000000000Z', '2026-11-27T10:00:00.000000000Z');
INSERT INTO staff_tokens VALUES(X'01', 'ann', '2026-11-27T10:00:00.000000000Z', NULL);
INSERT INTO exports VALUES('x-old', 'inc-old', 'court', 'PR-1', 'ann', '2026-11-27T11:00:00.000000000Z', NULL, NULL, 'requested', '', NULL);
INSERT INTO intents VALUES('inc-old/s-old/original/000002', 'inc-old', 's-old', 'original', 2, '2026-12-27T10:00:02.000000000Z',
	'2026-11-27T10:00:02.000000000Z', 2000000000, 4000000000, '2026-11-27T10:00:02.000000000Z', 1000, 1100, 60, 48, 'p2', 'c2',
	'quarantined', 'old note');
