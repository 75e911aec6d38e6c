--  010: reading_keys pruned by a sweep of the heap (owner: store).
--
--  reading_keys_ts_idx (008) served only the pruning, and it is the third
--  B-tree insert of every reading with a readingId: without it PostgreSQL
--  spends 0.4-1.0 us less CPU per reading (services/store/BENCH.md). The keys
--  older than the retry window are now found by reading the table itself,
--  a bounded range of blocks per call (a TID Range Scan: no index), from a
--  stored cursor that wraps to block 0 past the table's end. A full pass
--  visits every block, so a key is deleted at most one pass interval after
--  it turns keep_days old. The store starts a pass a day after the last
--  one ended (S_PRUNE_EVERY_MS in store_writer.c), so keys live 7 days
--  plus at most a day and the pass's own length (~2 minutes at 50 M keys).
--  Passes cost ~0.1 us per key read; every 10 minutes a key would be read
--  ~1000 times in its 7 days, a hundred times what the index cost.
--
--  A BRIN index on ts was no alternative: a range's summary only widens,
--  and freed space takes new keys, so after one retention cycle every
--  range matches and a "chunk" reads the whole table.
DROP INDEX IF EXISTS reading_keys_ts_idx;

--  The oldest-first chunk of 008 needs the index: without it every call
--  would sort the whole table. Only store_writer.c called it.
DROP FUNCTION IF EXISTS phantom_prune_reading_keys (int, int);

--  The sweep's cursor: the block the next call starts at. One row.
CREATE TABLE reading_keys_sweep (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    next_block  bigint NOT NULL DEFAULT 0 CHECK (next_block >= 0)
);
INSERT INTO reading_keys_sweep DEFAULT VALUES;

--  Deletes the keys older than keep_days among the blocks [cursor, cursor
--  + pages) of reading_keys and moves the cursor past them. The call that
--  reaches the table's last block (pg_relation_size / block_size, read now)
--  also takes every block beyond it (the table may have grown meanwhile),
--  sets the cursor back to 0 and says wrapped: a full pass has ended. A
--  cursor past the end (vacuum truncated the table) ends the pass too.
--  The cursor row is locked, so concurrent callers take turns.
CREATE FUNCTION phantom_prune_reading_keys_sweep (keep_days int, pages int,
                                                  OUT deleted integer, OUT wrapped boolean)
LANGUAGE plpgsql AS $$
DECLARE
    first bigint;
    blocks bigint;
    cutoff timestamptz;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 OR pages IS NULL OR pages < 1 THEN
        RAISE EXCEPTION 'phantom_prune_reading_keys_sweep: keep_days and pages must be at least 1';
    END IF;
    SELECT s.next_block INTO STRICT first FROM reading_keys_sweep s WHERE s.one FOR UPDATE;
    blocks := pg_relation_size ('reading_keys') / current_setting ('block_size')::bigint;
    cutoff := now () - make_interval (days => keep_days);
    deleted := 0;
    IF first >= blocks THEN
        wrapped := true;
    ELSIF first + pages >= blocks THEN
        wrapped := true;
        DELETE FROM reading_keys
        WHERE ctid >= format ('(%s,0)', first)::tid AND ts < cutoff;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    ELSE
        wrapped := false;
        DELETE FROM reading_keys
        WHERE ctid >= format ('(%s,0)', first)::tid
          AND ctid < format ('(%s,0)', first + pages)::tid AND ts < cutoff;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    UPDATE reading_keys_sweep s SET next_block = CASE WHEN wrapped THEN 0 ELSE first + pages END
    WHERE s.one;
END $$;
