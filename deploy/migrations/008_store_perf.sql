--  008: the store's write path (owner: store).
--
--  reading_keys only has to outlive the clients' retry window: a reading
--  retried with the same readingId within it is stored once. Until now
--  nothing pruned it, so it grew with every reading ever stored. The store
--  now deletes keys older than the window (7 days) a chunk at a time. The
--  table cannot be partitioned by time instead: uniqueness of (device_id,
--  reading_key) must hold across partitions, and a partitioned table's
--  unique key must contain the partition key (a retry of a reading without
--  a device timestamp carries a different time).
--
--  The index on ts serves only the pruning. ts is mostly increasing, so
--  its inserts go to the rightmost leaf: cheap next to the primary key.
CREATE INDEX IF NOT EXISTS reading_keys_ts_idx ON reading_keys (ts);

--  Deletes at most max_rows keys whose reading is older than keep_days
--  days, oldest first; returns how many. Through ctid, so that the chunk
--  is found by the ts index and deleted by tid, whatever the statistics.
CREATE FUNCTION phantom_prune_reading_keys (keep_days int, max_rows int) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 OR max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'phantom_prune_reading_keys: keep_days and max_rows must be at least 1';
    END IF;
    DELETE FROM reading_keys
    WHERE ctid = ANY (ARRAY (SELECT ctid FROM reading_keys
                             WHERE ts < now () - make_interval (days => keep_days)
                             ORDER BY ts LIMIT max_rows));
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END $$;
