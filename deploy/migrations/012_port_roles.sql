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
UPDATE ports SET role = 'should_be_off' WHERE expected_off IN ('always', 'window');
UPDATE ports SET off_schedule = jsonb_build_array (jsonb_build_object (
        'days', '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]'::jsonb,
        'from', to_char (expected_off_from, 'HH24:MI'),
        'to', to_char (expected_off_to, 'HH24:MI')))
    WHERE expected_off = 'window' AND expected_off_from IS NOT NULL AND expected_off_to IS NOT NULL;
