--  PhantomWatch schema, migration 013 (gateway, notifier): tariffs in force
--  over time, the account's locale, and the figures a homeowner reads.
--
--  Every figure (docs/figures-and-api.md) is computed here, once: the
--  gateway's /api/summary, energy and episodes answers and the notifier's
--  daily digest call these functions, so the digest says what the overview
--  says. The gap of 300 s is the rollups' (STORE_MAINTENANCE_GAP_SECONDS):
--  two readings further apart are offline, neither reported time nor energy.

--  The tariff in force from valid_from until the next row's valid_from.
--  price_per_kwh is the flat price, or the base (off-peak) price of a
--  time-of-use tariff whose peak_windows (weekly, in the owner's time zone,
--  the API's shape: [{"days": ["mon", ...], "from": "HH:MM", "to": "HH:MM"}])
--  cost peak_price_per_kwh. A user's first row starts at -infinity.
CREATE TABLE tariffs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    valid_from          timestamptz NOT NULL,
    price_per_kwh       double precision NOT NULL CHECK (price_per_kwh >= 0),
    peak_price_per_kwh  double precision CHECK (peak_price_per_kwh >= 0),
    peak_windows        jsonb CHECK (peak_windows IS NULL OR jsonb_typeof (peak_windows) = 'array'),
    CHECK ((peak_price_per_kwh IS NULL) = (peak_windows IS NULL)),
    UNIQUE (user_id, valid_from)
);
INSERT INTO tariffs (user_id, valid_from, price_per_kwh)
SELECT id, '-infinity', tariff_per_kwh FROM users;
ALTER TABLE users DROP COLUMN tariff_per_kwh;

--  Every new user starts with the default flat price for all time.
CREATE FUNCTION phantom_user_tariff () RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tariffs (user_id, valid_from, price_per_kwh) VALUES (NEW.id, '-infinity', 0.30);
    RETURN NULL;
END $$;
CREATE TRIGGER users_tariff AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION phantom_user_tariff ();

--  BCP 47 tag the account's texts (the daily digest) are written in; NULL
--  until the dashboard sets it from the browser's.
ALTER TABLE users ADD COLUMN locale text CHECK (locale ~ '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$');

--  Seconds of [from_ts, to_ts) inside weekly windows in zone tz. A window
--  belongs to the days it starts on and runs past midnight when its "to"
--  is at or before its "from" ("00:00" ends at midnight).
CREATE FUNCTION phantom_window_seconds (windows jsonb, tz text, from_ts timestamptz,
                                        to_ts timestamptz) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
DECLARE
    names constant text[] := ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
    total double precision := 0;
    day date;
    w jsonb;
    from_min int;
    to_min int;
    starts timestamptz;
    ends timestamptz;
BEGIN
    IF windows IS NULL OR to_ts <= from_ts THEN
        RETURN 0;
    END IF;
    --  A window that started the day before may reach into from_ts's day.
    FOR day IN SELECT generate_series ((from_ts AT TIME ZONE tz)::date - 1,
                                       (to_ts AT TIME ZONE tz)::date, interval '1 day')::date LOOP
        FOR w IN SELECT value FROM jsonb_array_elements (windows) LOOP
            CONTINUE WHEN NOT (w -> 'days') ? names[extract (isodow FROM day)::int];
            from_min := split_part (w ->> 'from', ':', 1)::int * 60 + split_part (w ->> 'from', ':', 2)::int;
            to_min := split_part (w ->> 'to', ':', 1)::int * 60 + split_part (w ->> 'to', ':', 2)::int;
            starts := (day + make_interval (mins => from_min)) AT TIME ZONE tz;
            ends := (day + make_interval (days => CASE WHEN to_min <= from_min THEN 1 ELSE 0 END,
                                          mins => to_min)) AT TIME ZONE tz;
            total := total + greatest (0, extract (epoch FROM least (ends, to_ts) - greatest (starts, from_ts)));
        END LOOP;
    END LOOP;
    RETURN total;
END $$;

--  What energy_wh costs when drawn evenly over [from_ts, to_ts), each moment
--  at the user's tariff in force then; at the price of from_ts when the
--  span is empty. In the currency of the user.
CREATE FUNCTION phantom_tariff_cost (owner bigint, from_ts timestamptz, to_ts timestamptz,
                                     energy_wh double precision) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
DECLARE
    tz text;
    period record;
    low timestamptz;
    high timestamptz;
    seconds double precision;
    peak double precision;
    weighted double precision := 0;
    span double precision;
BEGIN
    IF energy_wh IS NULL OR energy_wh = 0 THEN
        RETURN 0;
    END IF;
    SELECT time_zone INTO tz FROM users WHERE id = owner;
    IF to_ts <= from_ts THEN
        --  An instant: a millisecond's price (peak or not).
        to_ts := from_ts + interval '1 millisecond';
    END IF;
    span := extract (epoch FROM to_ts - from_ts);
    FOR period IN SELECT t.valid_from, lead (t.valid_from, 1, 'infinity') OVER (ORDER BY t.valid_from) AS valid_to,
                         t.price_per_kwh, t.peak_price_per_kwh, t.peak_windows
                  FROM tariffs t WHERE t.user_id = owner ORDER BY t.valid_from LOOP
        low := greatest (from_ts, period.valid_from);
        high := least (to_ts, period.valid_to);
        CONTINUE WHEN high <= low;
        seconds := extract (epoch FROM high - low);
        peak := CASE WHEN period.peak_price_per_kwh IS NULL THEN 0
                     ELSE least (seconds, phantom_window_seconds (period.peak_windows, tz, low, high)) END;
        weighted := weighted + (seconds - peak) * period.price_per_kwh
                             + peak * coalesce (period.peak_price_per_kwh, 0);
    END LOOP;
    RETURN energy_wh / 1000 * weighted / span;
END $$;

--  Energy used and time reported by a port over [from_ts, to_ts): the
--  intervals that start in it. Whole minutes before the rollups'
--  watermark come from readings_minute, the rest (the part of the first
--  minute, and everything after the watermark) from raw readings, as the
--  readings answer splits its buckets.
CREATE FUNCTION phantom_port_usage (port uuid, from_ts timestamptz, to_ts timestamptz,
                                    OUT energy_wh double precision,
                                    OUT reported_seconds double precision)
LANGUAGE sql STABLE AS $$
    WITH b AS (
        SELECT least (date_bin ('1 minute', from_ts - interval '1 microsecond', timestamptz 'epoch')
                      + interval '1 minute', to_ts) AS c
    ), w AS (
        SELECT c, greatest (c, least (date_bin ('1 minute', to_ts, timestamptz 'epoch'),
                                      coalesce ((SELECT watermark FROM rollup_state), c))) AS d
        FROM b
    ), raw AS (
        SELECT sum ((r.power + r.next_power) / 2 * extract (epoch FROM r.next_ts - r.ts)) / 3600 AS energy_wh,
               sum (extract (epoch FROM r.next_ts - r.ts)) AS seconds
        FROM w CROSS JOIN LATERAL (
            SELECT ts, power, lead (ts) OVER o AS next_ts, lead (power) OVER o AS next_power
            FROM readings
            WHERE port_id = port AND ((ts >= from_ts AND ts < w.c + interval '300 seconds')
                                      OR (ts >= w.d AND ts < to_ts + interval '300 seconds'))
            WINDOW o AS (ORDER BY ts)) r
        WHERE ((r.ts >= from_ts AND r.ts < w.c) OR (r.ts >= w.d AND r.ts < to_ts))
        AND r.next_ts - r.ts <= interval '300 seconds'
    ), rolled AS (
        SELECT sum (m.energy_wh) AS energy_wh, sum (m.reported_seconds) AS seconds
        FROM w, readings_minute m
        WHERE m.port_id = port AND m.minute >= w.c AND m.minute < w.d
    )
    SELECT coalesce (raw.energy_wh, 0) + coalesce (rolled.energy_wh, 0),
           coalesce (raw.seconds, 0) + coalesce (rolled.seconds, 0)
    FROM raw, rolled
$$;

--  Phantom energy of a port over [from_ts, to_ts), what it cost, and how
--  many episodes touch the window: each episode prorated by the part of its
--  time inside (its draw is its mean), an open one ending at the port's
--  last reading, a zero-length one whole in the window holding its start.
CREATE FUNCTION phantom_port_waste (port uuid, from_ts timestamptz, to_ts timestamptz,
                                    OUT energy_wh double precision, OUT cost double precision,
                                    OUT episodes bigint)
LANGUAGE sql STABLE AS $$
    SELECT coalesce (sum (part.wh), 0),
           coalesce (sum (phantom_tariff_cost (p.user_id, part.low, part.high, part.wh)), 0),
           count (*)
    FROM ports p
    JOIN episodes e ON e.port_id = p.id AND e.started_at < to_ts
    CROSS JOIN LATERAL (SELECT greatest (e.started_at, coalesce (e.ended_at, p.last_reading_at, e.started_at))
                               AS ended) x
    CROSS JOIN LATERAL (
        SELECT greatest (e.started_at, from_ts) AS low, least (x.ended, to_ts) AS high,
               CASE WHEN x.ended = e.started_at THEN e.energy_wh
                    ELSE e.energy_wh * extract (epoch FROM least (x.ended, to_ts) - greatest (e.started_at, from_ts))
                         / extract (epoch FROM x.ended - e.started_at) END AS wh) part
    WHERE p.id = port
    AND (x.ended > from_ts OR (x.ended = e.started_at AND e.started_at >= from_ts))
$$;

--  One row per port of owner, oldest port first: its "day" window
--  [day_from, day_to) (today for the overview, yesterday for the digest),
--  the last 30 days up to at, the yearly projection over the observed
--  window and the lowest steady draw. The observed window is the last 30
--  days or, when shorter, since the port's first reading: no interval and
--  no episode starts before that reading, so the 30-day sums are its sums.
--  A port is learning (year_* NULL) below 24 reported hours.
CREATE FUNCTION phantom_figures (owner bigint, day_from timestamptz, day_to timestamptz,
                                 at timestamptz)
RETURNS TABLE (port_id uuid, name text, role text, status text, last_power double precision,
               last_reading_at timestamptz,
               day_energy_wh double precision, day_reported_s double precision,
               day_phantom_wh double precision, day_phantom_cost double precision,
               last30_energy_wh double precision, last30_phantom_wh double precision,
               last30_phantom_cost double precision,
               observed_from timestamptz, reported_hours double precision,
               year_phantom_kwh double precision, year_phantom_cost double precision,
               lowest_steady_watts double precision)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.name, p.role, p.status, p.last_power, p.last_reading_at,
           du.energy_wh, du.reported_seconds, dw.energy_wh, dw.cost,
           mu.energy_wh, mw.energy_wh, mw.cost,
           greatest (at - interval '30 days', first.ts), mu.reported_seconds / 3600,
           CASE WHEN mu.reported_seconds >= 86400
                THEN mw.energy_wh / 1000 / (mu.reported_seconds / 3600) * 8760 END,
           CASE WHEN mu.reported_seconds >= 86400
                THEN mw.cost / (mu.reported_seconds / 3600) * 8760 END,
           steady.watts
    FROM ports p
    CROSS JOIN LATERAL phantom_port_usage (p.id, day_from, day_to) du
    CROSS JOIN LATERAL phantom_port_waste (p.id, day_from, day_to) dw
    CROSS JOIN LATERAL phantom_port_usage (p.id, at - interval '30 days', at) mu
    CROSS JOIN LATERAL phantom_port_waste (p.id, at - interval '30 days', at) mw
    LEFT JOIN LATERAL (SELECT r.ts FROM readings r WHERE r.port_id = p.id ORDER BY r.ts LIMIT 1) first ON true
    LEFT JOIN LATERAL (SELECT percentile_disc (0.01) WITHIN GROUP (ORDER BY r.power) AS watts
                       FROM readings r WHERE r.port_id = p.id
                       AND r.ts > p.last_reading_at - interval '24 hours'
                       AND r.ts <= p.last_reading_at) steady ON true
    WHERE p.user_id = owner
    ORDER BY p.created_at, p.id
$$;

--  The detector's histogram baseline is gone (the lowest steady draw is
--  exact, computed above from the readings): nothing writes or reads it.
ALTER TABLE ports DROP COLUMN always_on_watts;
