--  PhantomWatch schema, migration 011 (store): how long each port reported.
--
--  Waste is projected over the hours a port reported (docs/figures-and-api.md),
--  so each minute rollup keeps, beside the energy of the intervals that start
--  in it, their summed length: intervals longer than the gap are offline and
--  count neither energy nor time.
ALTER TABLE readings_minute ADD COLUMN reported_seconds double precision NOT NULL DEFAULT 0;

--  phantom_rollup (007) and phantom_rollup_ports (009) as before, with
--  reported_seconds beside energy_wh: the same intervals (each reading to
--  the port's next one, at most the gap apart, in the minute of its start),
--  their length instead of their trapezoid. Each interval's seconds are a
--  float8 summed in float8, as the store's lanes add them
--  (services/store/store_rollup.c), so both paths give the same sums.
CREATE OR REPLACE FUNCTION phantom_rollup (from_ts timestamptz, to_ts timestamptz,
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
    INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power, energy_wh,
                                      reported_seconds, samples)
    SELECT port_id, minute, min (power), avg (power), max (power),
           coalesce (sum ((power + next_power) / 2 * extract (epoch FROM next_ts - ts))
                     FILTER (WHERE next_ts - ts <= gap), 0) / 3600,
           coalesce (sum (extract (epoch FROM next_ts - ts)::float8)
                     FILTER (WHERE next_ts - ts <= gap), 0),
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
        max_power = excluded.max_power, energy_wh = excluded.energy_wh,
        reported_seconds = excluded.reported_seconds, samples = excluded.samples;
    GET DIAGNOSTICS written = ROW_COUNT;
    UPDATE rollup_state SET watermark = high WHERE watermark >= low AND watermark < high;
    RETURN written;
END $$;

CREATE OR REPLACE FUNCTION phantom_rollup_ports (ports uuid[], minutes timestamptz[], below timestamptz,
                                                 max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    gap interval := make_interval (secs => max_gap_seconds);
    written bigint;
BEGIN
    INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power, energy_wh,
                                      reported_seconds, samples)
    WITH dirty AS (
        SELECT DISTINCT d.port_id, date_bin ('1 minute', d.minute, timestamptz 'epoch') AS minute
        FROM unnest (ports, minutes) AS d (port_id, minute)
        WHERE d.port_id IS NOT NULL AND d.minute IS NOT NULL
    ),
    targets AS (
        SELECT port_id, minute FROM dirty
        UNION
        SELECT d.port_id, date_bin ('1 minute', p.ts, timestamptz 'epoch')
        FROM dirty d
        CROSS JOIN LATERAL (SELECT r.ts FROM readings r
                            WHERE r.port_id = d.port_id AND r.ts < d.minute
                            AND r.ts >= d.minute - gap
                            ORDER BY r.ts DESC LIMIT 1) p
    )
    SELECT t.port_id, t.minute, a.min_power, a.mean_power, a.max_power, a.energy_wh,
           a.reported_seconds, a.samples
    FROM targets t
    LEFT JOIN LATERAL (SELECT n.ts, n.power FROM readings n
                       WHERE n.port_id = t.port_id AND n.ts >= t.minute + interval '1 minute'
                       AND n.ts < t.minute + interval '1 minute' + gap
                       ORDER BY n.ts LIMIT 1) nx ON true
    CROSS JOIN LATERAL (
        SELECT min (power) AS min_power, avg (power) AS mean_power, max (power) AS max_power,
               coalesce (sum ((power + next_power) / 2 * extract (epoch FROM next_ts - ts))
                         FILTER (WHERE next_ts - ts <= gap), 0) / 3600 AS energy_wh,
               coalesce (sum (extract (epoch FROM next_ts - ts)::float8)
                         FILTER (WHERE next_ts - ts <= gap), 0) AS reported_seconds,
               count (*) AS samples
        FROM (SELECT r.ts, r.power,
                     coalesce (lead (r.ts) OVER w, nx.ts) AS next_ts,
                     CASE WHEN lead (r.ts) OVER w IS NULL THEN nx.power
                          ELSE lead (r.power) OVER w END AS next_power
              FROM readings r
              WHERE r.port_id = t.port_id AND r.ts >= t.minute
              AND r.ts < t.minute + interval '1 minute'
              WINDOW w AS (ORDER BY r.ts)) x) a
    WHERE t.minute < below AND a.samples > 0
    AND EXISTS (SELECT 1 FROM ports p WHERE p.id = t.port_id)
    ON CONFLICT (port_id, minute) DO UPDATE
    SET min_power = excluded.min_power, mean_power = excluded.mean_power,
        max_power = excluded.max_power, energy_wh = excluded.energy_wh,
        reported_seconds = excluded.reported_seconds, samples = excluded.samples;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

--  The rollups that exist: every minute that still has its raw readings is
--  rolled up again by phantom_rollup (so energy and reported time come from
--  the same intervals, and the arithmetic has one definition), from the
--  oldest rollup row or the oldest reading, whichever is later, to the
--  watermark (the minutes after it are the store's next run's; the range
--  never reaches it, so it does not move). A minute in that range with
--  readings but no row (a late reading whose mark was lost) gets its row;
--  nothing before the oldest row is written back, so the rollups' own
--  retention holds. One statement a UTC day: each sorts one daily
--  partition of readings (and the gap's worth of the next), not all of
--  them at once. Cost: one read of the raw readings kept and a rewrite of
--  their rollup rows: 0.9 M readings (20 ports, 6 days, every 10 s) and
--  181 k rows took 4-6 s on 2 shared cores. Minutes whose raw readings
--  retention has dropped keep reported_seconds 0 (their intervals are
--  gone: never a guess); the projection's window, the last 30 days, is
--  inside the raw retention (90 days by default).
--  The store must be restarted on the new binary (deploy/up does, right
--  after migrating and building): until then the old one's lanes upsert
--  minutes without the column, and the new one's first run re-rolls its
--  lookback window (rollup_lookback_minutes, 10) from the table.
DO $$
DECLARE
    first_reading timestamptz;
    first_rollup timestamptz;
    high timestamptz;
    low timestamptz;
    chunk_end timestamptz;
BEGIN
    --  Oldest per port on the (port_id, ts) and (port_id, minute) indexes:
    --  a min over all rows would read them all.
    SELECT min ((SELECT min (r.ts) FROM readings r WHERE r.port_id = p.id)),
           min ((SELECT min (m.minute) FROM readings_minute m WHERE m.port_id = p.id))
    INTO first_reading, first_rollup FROM ports p;
    SELECT watermark INTO high FROM rollup_state;
    IF first_reading IS NULL OR first_rollup IS NULL OR high IS NULL THEN
        RETURN;
    END IF;
    low := date_bin ('1 minute', greatest (first_reading, first_rollup), timestamptz 'epoch');
    WHILE low < high LOOP
        chunk_end := least (date_bin ('1 day', low, timestamptz 'epoch') + interval '1 day', high);
        PERFORM phantom_rollup (low, chunk_end);
        low := chunk_end;
    END LOOP;
END $$;
