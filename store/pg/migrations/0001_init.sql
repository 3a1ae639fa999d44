-- Safeclose schema version 1. Records are the same bytes as in Badger:
-- item and owner records authenticated (HMAC), the rest framed (CRC).
CREATE TABLE sc_keys (
	id     text PRIMARY KEY,
	canary bytea,
	used   boolean NOT NULL DEFAULT false
);
CREATE TABLE sc_items (
	tenant     text NOT NULL,
	item_id    text NOT NULL,
	user_id    text NOT NULL,
	created_at timestamptz NOT NULL,
	rec        bytea NOT NULL,
	PRIMARY KEY (tenant, item_id)
);
CREATE INDEX sc_items_user ON sc_items (tenant, user_id);
CREATE TABLE sc_owners (
	item_id text PRIMARY KEY,
	rec     bytea NOT NULL
);
CREATE TABLE sc_link_sessions (
	hash       text PRIMARY KEY,
	tenant     text NOT NULL,
	user_id    text NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	rec        bytea NOT NULL
);
CREATE INDEX sc_link_sessions_user ON sc_link_sessions (tenant, user_id, created_at DESC);
CREATE TABLE sc_intents (
	id  text PRIMARY KEY,
	rec bytea NOT NULL
);
CREATE TABLE sc_orphans (
	tenant     text NOT NULL,
	key        text NOT NULL,
	first_seen timestamptz NOT NULL,
	rec        bytea NOT NULL,
	PRIMARY KEY (tenant, key)
);
CREATE TABLE sc_queue (
	id          text PRIMARY KEY,
	tenant      text NOT NULL,
	rec         bytea NOT NULL,
	attempts    integer NOT NULL DEFAULT 0,
	next_at     timestamptz NOT NULL,
	last_error  text NOT NULL DEFAULT '',
	lease_token bigint NOT NULL DEFAULT 0,
	lease_owner text NOT NULL DEFAULT '',
	lease_until timestamptz,
	dead        boolean NOT NULL DEFAULT false
);
CREATE INDEX sc_queue_due ON sc_queue (tenant, id) WHERE NOT dead;
CREATE INDEX sc_queue_dead ON sc_queue (id) WHERE dead;
CREATE TABLE sc_dedupe (
	tenant      text NOT NULL,
	body_sha256 bytea NOT NULL,
	entry_id    text NOT NULL,
	expires_at  timestamptz NOT NULL,
	PRIMARY KEY (tenant, body_sha256)
);
CREATE INDEX sc_dedupe_expiry ON sc_dedupe (expires_at);
CREATE TABLE sc_probe (
	id integer PRIMARY KEY,
	v  bytea NOT NULL
);
