--  PhantomWatch schema, migration 006 (notifier): the daily digest.
--
--  Once a day, from notifier_digest_hour (local) on, the notifier writes one
--  notification of kind 'digest' per user with dedupe key
--  'digest:<local date>'; the unique (user_id, dedupe_key) makes that
--  restart-safe. Users opt out here; the settings API may expose it later.
ALTER TABLE users ADD COLUMN IF NOT EXISTS digest_enabled boolean NOT NULL DEFAULT true;
