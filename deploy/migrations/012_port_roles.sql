--  PhantomWatch schema, migration 012 (detector): each port's role.
--
--  standby (watch for low draw), should_be_off (any draw above off_watts is
--  phantom while its weekly off_schedule is on; NULL: always) and always_on
--  (by design: never phantom). off_schedule is the API's offSchedule as is:
--  [{"days": ["mon", ...], "from": "HH:MM", "to": "HH:MM"}, ...], in the
--  owner's time zone. Every expected_off setting becomes a role.
ALTER TABLE ports ADD COLUMN role text NOT NULL DEFAULT 'standby'
    CHECK (role IN ('standby', 'should_be_off', 'always_on'));
ALTER TABLE ports ADD COLUMN off_schedule jsonb
    CHECK (off_schedule IS NULL OR jsonb_typeof (off_schedule) = 'array');
--  A window's times become "HH:MM", 24:00 (a time PostgreSQL allows) as
--  00:00. A window without both ends, or with equal ones, never matched in
--  the detector: its port stays standby, as it behaved.
CREATE FUNCTION pg_temp.phantom_clock (t time) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN t = '24:00' THEN '00:00' ELSE to_char (t, 'HH24:MI') END $$;
UPDATE ports SET role = 'should_be_off'
    WHERE expected_off = 'always'
       OR (expected_off = 'window'
           AND pg_temp.phantom_clock (expected_off_from) <> pg_temp.phantom_clock (expected_off_to));
UPDATE ports SET off_schedule = jsonb_build_array (jsonb_build_object (
        'days', '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'::jsonb,
        'from', pg_temp.phantom_clock (expected_off_from),
        'to', pg_temp.phantom_clock (expected_off_to)))
    WHERE expected_off = 'window' AND role = 'should_be_off';
DROP FUNCTION pg_temp.phantom_clock (time);

--  The roles replace expected_off*. The gateways' port cache reloads a port
--  when a column it holds changes: the trigger watches the new ones
--  (dropped first: it depends on the old columns).
DROP TRIGGER ports_cache ON ports;
ALTER TABLE ports DROP COLUMN expected_off, DROP COLUMN expected_off_from,
    DROP COLUMN expected_off_to;
CREATE TRIGGER ports_cache AFTER INSERT OR UPDATE OF user_id, device_id, off_watts, standby_watts,
    min_phantom_seconds, role, off_schedule OR DELETE ON ports
    FOR EACH ROW EXECUTE FUNCTION phantom_cache_notify('port');
