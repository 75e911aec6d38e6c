--  PhantomWatch schema, migration 015 (gateway): sessions a user can see
--  and end, and that end when left unused.
--
--  A session had only its token's hash, its user and its two times, so a
--  user could not tell where they were signed in nor end a session but
--  the one in hand, and a stolen token lived its full 30 days however long
--  its owner had been gone. Now each session has an id to name it by in
--  the API (GET/DELETE /api/auth/sessions), the address and user agent it
--  signed in from, and when it was last used: the gateway refuses a session
--  idle longer than session_idle_seconds, and moves last_seen_at at most
--  once a minute, so signed-in reads stay reads.

ALTER TABLE sessions
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN client_address text,
    ADD COLUMN user_agent text;

CREATE UNIQUE INDEX sessions_id_key ON sessions (id);
