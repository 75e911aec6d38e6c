--  PhantomWatch schema, migration 004 (gateway user API): the always-on
--  baseline the summary projects from, and the indexes the API's paged lists
--  read by.

--  Always-on baseline of a port in W (1st-percentile bin of the last 24 h);
--  the detector/store fills it, NULL until it is known.
ALTER TABLE ports ADD COLUMN IF NOT EXISTS always_on_watts double precision;

--  GET /api/ports/:id/episodes pages newest first by id.
CREATE INDEX IF NOT EXISTS episodes_port_id_idx ON episodes (port_id, id DESC);

--  GET /api/webhooks/:id/deliveries pages newest first by id.
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id DESC);

--  The unread count every notification list and the live stream report.
CREATE INDEX IF NOT EXISTS notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;
