-- Safeclose schema version 2: the plugin key/value store (hostabi.KVStore),
-- shared by every replica. Quotas are checked in the writing transaction,
-- under a per-tenant advisory lock.
CREATE TABLE plugin_kv (
	tenant     text NOT NULL,
	key        bytea NOT NULL,
	value      bytea NOT NULL,
	expires_at timestamptz,
	updated_at timestamptz NOT NULL,
	PRIMARY KEY (tenant, key)
);
CREATE INDEX plugin_kv_expiry ON plugin_kv (expires_at) WHERE expires_at IS NOT NULL;
