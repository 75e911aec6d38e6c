--  PhantomWatch schema, version 1. Applied once by deploy/migrate, inside a
--  transaction, and recorded in schema_migrations.

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL,
    password_hash   text NOT NULL,                  -- libsodium crypto_pwhash_str (argon2id)
    tariff_per_kwh  double precision NOT NULL DEFAULT 0.30,
    currency        text NOT NULL DEFAULT 'EUR',
    time_zone       text NOT NULL DEFAULT 'UTC',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

--  Bearer tokens of signed-in users; only their SHA-256 is kept.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

--  A sensor board. Its token is shown once; only the SHA-256 is kept. On
--  rotation the previous hash stays valid until previous_token_expires_at.
CREATE TABLE devices (
    id                          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    name                        text NOT NULL,
    token_hash                  bytea UNIQUE,
    token_created_at            timestamptz,
    token_expires_at            timestamptz,
    previous_token_hash         bytea UNIQUE,
    previous_token_expires_at   timestamptz,
    token_last_used_at          timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_user_idx ON devices (user_id);

CREATE TABLE ports (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    device_id            bigint NOT NULL REFERENCES devices ON DELETE CASCADE,
    name                 text NOT NULL,
    status               text NOT NULL DEFAULT 'offline'
                         CHECK (status IN ('active', 'idle', 'phantom', 'off', 'offline')),
    status_since         timestamptz,
    last_reading_at      timestamptz,
    last_power           double precision,
    off_watts            real NOT NULL DEFAULT 0.5 CHECK (off_watts >= 0),
    standby_watts        real NOT NULL DEFAULT 15 CHECK (standby_watts > off_watts),
    min_phantom_seconds  integer NOT NULL DEFAULT 60 CHECK (min_phantom_seconds >= 0),
    expected_off         text NOT NULL DEFAULT 'never'
                         CHECK (expected_off IN ('never', 'always', 'window')),
    expected_off_from    time,
    expected_off_to      time,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ports_user_idx ON ports (user_id);
CREATE INDEX ports_device_idx ON ports (device_id);

--  Every reading, partitioned by day on its timestamp. Only (port_id, ts)
--  is indexed: it is what every query reads by. No foreign key, so inserts
--  stay cheap; a port's readings go with it through phantom_delete_port().
CREATE SEQUENCE readings_id_seq AS bigint;
CREATE TABLE readings (
    id        bigint NOT NULL DEFAULT nextval('readings_id_seq'),
    port_id   uuid NOT NULL,
    ts        timestamptz NOT NULL,
    voltage   double precision NOT NULL,
    current   double precision NOT NULL,
    power     double precision NOT NULL,
    status    smallint NOT NULL                     -- proto_status_t after this reading
) PARTITION BY RANGE (ts);
ALTER SEQUENCE readings_id_seq OWNED BY readings.id;
CREATE INDEX readings_port_ts_idx ON readings (port_id, ts);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;

--  Creates the daily partitions of readings from days_back before today to
--  days_ahead after it; the store calls it at start and every hour.
CREATE FUNCTION phantom_ensure_partitions (days_back int, days_ahead int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day date;
    name text;
BEGIN
    FOR day IN SELECT generate_series(current_date - days_back, current_date + days_ahead, '1 day')::date LOOP
        name := 'readings_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           name, day::timestamptz AT TIME ZONE 'UTC', (day + 1)::timestamptz AT TIME ZONE 'UTC');
        END IF;
    END LOOP;
END $$;
SET TIME ZONE 'UTC';
SELECT phantom_ensure_partitions(7, 7);

--  Idempotency: a device's readingId maps to the reading stored for it, so a
--  retry is stored once and answered with the same id.
CREATE TABLE reading_keys (
    device_id    bigint NOT NULL,
    reading_key  text NOT NULL,
    reading_id   bigint NOT NULL,
    ts           timestamptz NOT NULL,
    PRIMARY KEY (device_id, reading_key)
);

--  Phantom episodes; (port_id, started_at) identifies one across detector restarts.
CREATE TABLE episodes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    port_id      uuid NOT NULL REFERENCES ports ON DELETE CASCADE,
    user_id      bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    mean_watts   double precision NOT NULL DEFAULT 0,
    peak_watts   double precision NOT NULL DEFAULT 0,
    energy_wh    double precision NOT NULL DEFAULT 0,
    samples      integer NOT NULL DEFAULT 0,
    UNIQUE (port_id, started_at)
);
CREATE INDEX episodes_user_idx ON episodes (user_id, started_at);

--  What the owner is told; dedupe_key makes a re-delivered event harmless.
CREATE TABLE notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    port_id     uuid REFERENCES ports ON DELETE CASCADE,
    kind        text NOT NULL,                      -- phantom.start, phantom.end, digest
    dedupe_key  text NOT NULL,
    title       text NOT NULL,
    message     text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, dedupe_key)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);

--  Cache invalidation for gateways: they keep device-token hashes and port
--  ownership in memory and LISTEN on phantom_cache for what changed.
CREATE FUNCTION phantom_cache_notify () RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row record;
BEGIN
    IF TG_OP = 'DELETE' THEN row := OLD; ELSE row := NEW; END IF;
    PERFORM pg_notify('phantom_cache', TG_ARGV[0] || ':' || row.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER devices_cache AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION phantom_cache_notify('device');
CREATE TRIGGER ports_cache AFTER INSERT OR UPDATE OF user_id, device_id, off_watts, standby_watts,
    min_phantom_seconds, expected_off, expected_off_from, expected_off_to OR DELETE ON ports
    FOR EACH ROW EXECUTE FUNCTION phantom_cache_notify('port');
--  A user's tariff and time zone travel with their ports' settings.
CREATE TRIGGER users_cache AFTER UPDATE OF time_zone ON users
    FOR EACH ROW EXECUTE FUNCTION phantom_cache_notify('user');
