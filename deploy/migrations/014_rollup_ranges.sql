--  PhantomWatch schema, migration 014 (store): late readings re-rolled by
--  ranges, and their marks kept in the database.
--
--  A backfill of history (device timestamps days back) changes long runs
--  of minutes already rolled up. phantom_rollup_ports (009, 011) re-rolled
--  them pair by pair: index lookups and a window per (port, minute). And
--  the pairs lived in the store's memory only: a store killed between the
--  commit of late readings and the re-roll lost them, and those minutes
--  stayed wrong for good.

--  Minutes to re-roll: the store's lanes insert a row in the transaction
--  of the late readings that change minutes already rolled up (the row
--  commits with the readings or not at all), one per port and run of
--  minutes of the batch; the maintenance re-rolls and deletes them
--  (phantom_rollup_marks), whatever process wrote them. Each row: the
--  minutes first_minute to last_minute (whole minutes, both included) and
--  the minute of the port's last reading before first_minute, when that
--  reading is at most the gap before it (a reading new in first_minute
--  closes that reading's last interval). No key but the id: rows of the
--  same minutes may repeat (each is work, never wrong), and a lane's
--  insert never waits for the maintenance deleting a row like it. No
--  foreign key, as readings (a deleted port's marks are deleted unrolled).
CREATE TABLE rollup_marks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    port_id       uuid NOT NULL,
    first_minute  timestamptz NOT NULL,
    last_minute   timestamptz NOT NULL
);

--  Re-rolls, for each (port, first, last), the minutes first to last and
--  the minute of the port's last reading before first (at most the gap
--  before it), as phantom_rollup computes them: min, plain mean, max and
--  count of the minute's readings, energy and length of the intervals
--  starting in it (each reading to the port's next one, the last one to
--  the first reading after the minute), intervals longer than the gap
--  skipped. Ranges of a port that overlap or touch (after that extension)
--  are one range: a port's range is ONE ordered scan of its readings, from
--  the extension's minute to the gap after the range, with a window for
--  the next reading; no per-minute lookups. Only minutes before below are
--  written (later ones are the regular rollup's), only for ports that
--  exist. The watermark is not moved. Returns the number of minutes
--  written.
CREATE FUNCTION phantom_rollup_ranges (ports uuid[], firsts timestamptz[], lasts timestamptz[],
                                       below timestamptz,
                                       max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    gap interval := make_interval (secs => max_gap_seconds);
    upto timestamptz := date_bin ('1 minute', below, timestamptz 'epoch');
    written bigint;
BEGIN
    INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power, energy_wh,
                                      reported_seconds, samples)
    WITH marked AS (
        SELECT d.port_id, date_bin ('1 minute', d.first_minute, timestamptz 'epoch') AS first_minute,
               least (date_bin ('1 minute', d.last_minute, timestamptz 'epoch') + interval '1 minute',
                      upto) AS high
        FROM unnest (ports, firsts, lasts) AS d (port_id, first_minute, last_minute)
        WHERE d.port_id IS NOT NULL AND d.first_minute IS NOT NULL AND d.last_minute IS NOT NULL
        AND d.last_minute >= d.first_minute
    ),
    --  [low, high): from the minute of the reading before the range.
    ranges AS (
        SELECT k.port_id, coalesce (date_bin ('1 minute', p.ts, timestamptz 'epoch'), k.first_minute) AS low,
               k.high
        FROM marked k
        LEFT JOIN LATERAL (SELECT r.ts FROM readings r
                           WHERE r.port_id = k.port_id AND r.ts < k.first_minute
                           AND r.ts >= k.first_minute - gap
                           ORDER BY r.ts DESC LIMIT 1) p ON true
    ),
    --  A range that starts at or before the end of the ones before it
    --  (by start) continues their island.
    starts AS (
        SELECT port_id, low, high,
               low > max (high) OVER (PARTITION BY port_id ORDER BY low, high
                                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               IS NOT FALSE AS starts
        FROM ranges WHERE low < high
    ),
    islands AS (
        SELECT port_id, min (low) AS low, max (high) AS high
        FROM (SELECT port_id, low, high,
                     count (*) FILTER (WHERE starts) OVER (PARTITION BY port_id ORDER BY low, high
                                                           ROWS UNBOUNDED PRECEDING) AS island
              FROM starts) s
        GROUP BY port_id, island
    )
    SELECT i.port_id, x.minute, min (x.power), avg (x.power), max (x.power),
           coalesce (sum ((x.power + x.next_power) / 2 * extract (epoch FROM x.next_ts - x.ts))
                     FILTER (WHERE x.next_ts - x.ts <= gap), 0) / 3600,
           coalesce (sum (extract (epoch FROM x.next_ts - x.ts)::float8)
                     FILTER (WHERE x.next_ts - x.ts <= gap), 0),
           count (*)
    FROM islands i
    CROSS JOIN LATERAL (SELECT r.ts, r.power, date_bin ('1 minute', r.ts, timestamptz 'epoch') AS minute,
                               lead (r.ts) OVER w AS next_ts, lead (r.power) OVER w AS next_power
                        FROM readings r
                        WHERE r.port_id = i.port_id AND r.ts >= i.low AND r.ts < i.high + gap
                        WINDOW w AS (ORDER BY r.ts)) x
    WHERE x.ts < i.high AND EXISTS (SELECT 1 FROM ports p WHERE p.id = i.port_id)
    GROUP BY i.port_id, x.minute
    ON CONFLICT (port_id, minute) DO UPDATE
    SET min_power = excluded.min_power, mean_power = excluded.mean_power,
        max_power = excluded.max_power, energy_wh = excluded.energy_wh,
        reported_seconds = excluded.reported_seconds, samples = excluded.samples;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

--  Deletes the marks ids and re-rolls their ranges (phantom_rollup_ranges)
--  in the same transaction: a mark goes only with its re-roll. A mark a
--  lane commits later is not in ids and waits for the next call. Returns
--  the number of minutes written.
CREATE FUNCTION phantom_rollup_marks (ids bigint[], below timestamptz,
                                      max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    ports uuid[];
    firsts timestamptz[];
    lasts timestamptz[];
BEGIN
    WITH taken AS (DELETE FROM rollup_marks WHERE id = ANY (ids)
                   RETURNING port_id, first_minute, last_minute)
    SELECT array_agg (port_id), array_agg (first_minute), array_agg (last_minute)
    INTO ports, firsts, lasts FROM taken;
    IF ports IS NULL THEN
        RETURN 0;
    END IF;
    RETURN phantom_rollup_ranges (ports, firsts, lasts, below, max_gap_seconds);
END $$;

--  The pairs of 009 are ranges of one minute: one implementation of the
--  arithmetic (pairs of a port next to each other now share one scan).
CREATE OR REPLACE FUNCTION phantom_rollup_ports (ports uuid[], minutes timestamptz[], below timestamptz,
                                                 max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE sql AS $$
    SELECT phantom_rollup_ranges (ports, minutes, minutes, below, max_gap_seconds)
$$;
