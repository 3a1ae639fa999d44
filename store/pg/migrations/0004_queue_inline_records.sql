-- Safeclose schema version 4: queue records stay inline and uncompressed
-- up to a page. A webhook's record (its body base64-encoded, Plaid's
-- headers) is ~2-3 KB, just past PostgreSQL's default 2 KB toast target,
-- so every enqueue compressed it with pglz (PostgreSQL CPU on the intake's
-- hot path) and every lease decompressed it. Records over ~8 KB are still
-- moved out of line as before.
ALTER TABLE sc_queue SET (toast_tuple_target = 8160);
