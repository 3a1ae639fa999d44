-- Safeclose schema version 3: the dedupe markers' expiry index is a BRIN
-- index. Markers are written with expires_at = now + TTL, so expires_at
-- follows their place in the table, and Sweep's range delete needs only
-- block ranges, not a btree entry per webhook on the intake's hot path.
DROP INDEX sc_dedupe_expiry;
CREATE INDEX sc_dedupe_expiry ON sc_dedupe USING brin (expires_at) WITH (autosummarize = on);
