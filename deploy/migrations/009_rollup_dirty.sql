--  009: incremental rollups (owner: store).
--
--  The store's maintenance now rolls up each complete minute once, when the
--  watermark passes it, instead of re-rolling the last lookback minutes of
--  every port every minute. Readings that change minutes already rolled up
--  (late ones, and the first reading after a minute whose last interval was
--  still open) are tracked by the store's lanes as (port, minute) pairs;
--  this function re-rolls exactly those.
--
--  For each pair (port, m) it recomputes minute m and the minute of the
--  port's last reading before m, when that reading is at most the gap before
--  m: a reading new in m changes the intervals that start in m, and the
--  trapezoid from its predecessor, which belongs to the predecessor's
--  minute. Minutes in between have no readings. Each minute is computed as
--  phantom_rollup computes it: min, plain mean, max and count of its
--  readings, energy of the intervals starting in it (each reading to the
--  port's next one, the last one to the first reading after the minute),
--  skipping intervals longer than the gap. Only minutes before below are
--  written (later ones are the regular rollup's, once complete), only for
--  ports that exist. The watermark is not moved. Returns the number of
--  minutes written.
CREATE FUNCTION phantom_rollup_ports (ports uuid[], minutes timestamptz[], below timestamptz,
                                      max_gap_seconds double precision DEFAULT 300) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    gap interval := make_interval (secs => max_gap_seconds);
    written bigint;
BEGIN
    INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power, energy_wh, samples)
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
    SELECT t.port_id, t.minute, a.min_power, a.mean_power, a.max_power, a.energy_wh, a.samples
    FROM targets t
    LEFT JOIN LATERAL (SELECT n.ts, n.power FROM readings n
                       WHERE n.port_id = t.port_id AND n.ts >= t.minute + interval '1 minute'
                       AND n.ts < t.minute + interval '1 minute' + gap
                       ORDER BY n.ts LIMIT 1) nx ON true
    CROSS JOIN LATERAL (
        SELECT min (power) AS min_power, avg (power) AS mean_power, max (power) AS max_power,
               coalesce (sum ((power + next_power) / 2 * extract (epoch FROM next_ts - ts))
                         FILTER (WHERE next_ts - ts <= gap), 0) / 3600 AS energy_wh,
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
        max_power = excluded.max_power, energy_wh = excluded.energy_wh, samples = excluded.samples;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;
