--  PhantomWatch schema, migration 007 (retention): per-minute rollups of
--  readings, the watermark up to which they are complete, and the functions
--  the store's maintenance thread calls to roll up and to drop old data.
--  Every time here is cut with date_bin from the epoch, not date_trunc, so
--  a minute or a day means the same instant whatever the session time zone.

--  One row per port and minute that had readings. mean_power is the plain
--  mean of the readings (as the readings query's avg), so a bucket built
--  from minutes (mean weighted by samples) equals the one built from raw
--  readings. energy_wh is the trapezoidal integral over the intervals that
--  START in this minute (each reading to the port's next one, even when the
--  next is in a later minute), skipping intervals longer than the gap limit
--  of phantom_rollup: missing data is never read as power. The minutes of a
--  range therefore add up to the range's integral, as episodes compute it.
--
--  Partitioned by month: retention then drops whole months (DROP TABLE, not
--  deleting ~1440 rows per port and day and vacuuming after), and a long
--  query reads one or two partitions. Monthly rather than daily like
--  readings: a port's month is only 44,640 rows, and 730 days of rollups
--  are 25 partitions rather than 730. The price is granularity: rollups
--  stay until their whole month is older than the retention.
CREATE TABLE readings_minute (
    port_id     uuid NOT NULL REFERENCES ports ON DELETE CASCADE,
    minute      timestamptz NOT NULL,
    min_power   double precision NOT NULL,
    mean_power  double precision NOT NULL,
    max_power   double precision NOT NULL,
    energy_wh   double precision NOT NULL,
    samples     integer NOT NULL,
    PRIMARY KEY (port_id, minute)
) PARTITION BY RANGE (minute);
--  Only for minutes outside the months created ahead (a clock far off).
CREATE TABLE readings_minute_default PARTITION OF readings_minute DEFAULT;

--  Every minute before watermark has been rolled up (the readings query
--  reads rollups before it and raw readings after it). One row.
CREATE TABLE rollup_state (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    watermark  timestamptz NOT NULL
);
--  Start at the oldest reading, so the store catches up on what exists.
--  min per port reads the (port_id, ts) index; min over all readings
--  would scan them all.
INSERT INTO rollup_state (watermark)
SELECT date_bin ('1 minute', coalesce (min ((SELECT min (r.ts) FROM readings r WHERE r.port_id = p.id)),
                                       now ()), timestamptz 'epoch')
FROM ports p;

--  Creates the monthly partitions of readings_minute from months_back
--  before this month to months_ahead after it; the store calls it hourly.
--  A month whose rows already sit in the default partition cannot be
--  created: that is a warning, and those rows stay where they are.
CREATE FUNCTION phantom_ensure_rollup_partitions (months_back int, months_ahead int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    month date;
    name text;
BEGIN
    FOR month IN SELECT generate_series (date_trunc ('month', current_date) - make_interval (months => months_back),
                                         date_trunc ('month', current_date) + make_interval (months => months_ahead),
                                         '1 month')::date LOOP
        name := 'readings_minute_' || to_char (month, 'YYYYMM');
        IF to_regclass (name) IS NULL THEN
            BEGIN
                EXECUTE format ('CREATE TABLE %I PARTITION OF readings_minute FOR VALUES FROM (%L) TO (%L)',
                                name, month::timestamp AT TIME ZONE 'UTC',
                                (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            EXCEPTION WHEN check_violation THEN
                RAISE WARNING 'phantom_ensure_rollup_partitions: % has rows in the default partition', name;
            END;
        END IF;
    END LOOP;
END $$;
SELECT phantom_ensure_rollup_partitions (4, 2);

--  (Re)computes the rollups of the whole minutes in [from_ts, to_ts) from
--  readings, and moves the watermark to to_ts when the range reaches it
--  (a range that starts after the watermark leaves a gap, so it does not).
--  Readings up to max_gap_seconds after to_ts are read only as the next
--  reading of the last intervals. Readings of ports that no longer exist
--  are skipped. Returns the number of minutes written.
CREATE FUNCTION phantom_rollup (from_ts timestamptz, to_ts timestamptz,
                                max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    low timestamptz := date_bin ('1 minute', from_ts, timestamptz 'epoch');
    high timestamptz := date_bin ('1 minute', to_ts, timestamptz 'epoch');
    gap interval := make_interval (secs => max_gap_seconds);
    written bigint;
BEGIN
    IF high <= low THEN
        RETURN 0;
    END IF;
    INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power, energy_wh, samples)
    SELECT port_id, minute, min (power), avg (power), max (power),
           coalesce (sum ((power + next_power) / 2 * extract (epoch FROM next_ts - ts))
                     FILTER (WHERE next_ts - ts <= gap), 0) / 3600,
           count (*)
    FROM (SELECT port_id, ts, power, date_bin ('1 minute', ts, timestamptz 'epoch') AS minute,
                 lead (ts) OVER w AS next_ts, lead (power) OVER w AS next_power
          FROM readings
          WHERE ts >= low AND ts < high + gap
          WINDOW w AS (PARTITION BY port_id ORDER BY ts)) r
    WHERE ts < high AND EXISTS (SELECT 1 FROM ports p WHERE p.id = r.port_id)
    GROUP BY port_id, minute
    ON CONFLICT (port_id, minute) DO UPDATE
    SET min_power = excluded.min_power, mean_power = excluded.mean_power,
        max_power = excluded.max_power, energy_wh = excluded.energy_wh, samples = excluded.samples;
    GET DIAGNOSTICS written = ROW_COUNT;
    UPDATE rollup_state SET watermark = high WHERE watermark >= low AND watermark < high;
    RETURN written;
END $$;

--  Raw retention: drops the daily readings_YYYYMMDD partitions of days
--  before current_date - keep_days (today and the keep_days days before it
--  stay), and deletes such rows from readings_default. A drop locks
--  readings for a moment: the wait for that lock is bounded, and a timeout
--  fails the call (the store retries later) rather than queue writers.
--  Returns the number of partitions dropped.
CREATE FUNCTION phantom_drop_partitions (keep_days int) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cutoff date := current_date - keep_days;
    part record;
    dropped integer := 0;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'phantom_drop_partitions: keep_days must be at least 1';
    END IF;
    PERFORM set_config ('lock_timeout', '5s', true);
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$'
                AND c.relname < 'readings_' || to_char (cutoff, 'YYYYMMDD')
                ORDER BY c.relname LOOP
        EXECUTE format ('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM readings_default WHERE ts < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END $$;

--  Rollup retention: drops the monthly readings_minute_YYYYMM partitions
--  that end on or before current_date - keep_days, and deletes older rows
--  from the default partition. Returns the number of partitions dropped.
CREATE FUNCTION phantom_drop_rollups (keep_days int) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cutoff date := current_date - keep_days;
    part record;
    dropped integer := 0;
BEGIN
    IF keep_days IS NULL OR keep_days < 1 THEN
        RAISE EXCEPTION 'phantom_drop_rollups: keep_days must be at least 1';
    END IF;
    PERFORM set_config ('lock_timeout', '5s', true);
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'readings_minute'::regclass
                AND c.relname ~ '^readings_minute_[0-9]{6}$'
                AND to_date (right (c.relname, 6), 'YYYYMM') + interval '1 month' <= cutoff
                ORDER BY c.relname LOOP
        EXECUTE format ('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    DELETE FROM readings_minute_default WHERE minute < cutoff::timestamp AT TIME ZONE 'UTC';
    RETURN dropped;
END $$;
