--  PhantomWatch schema, migration 003 (notifier): webhooks and their durable
--  delivery outbox. The gateway's user API manages webhooks; the notifier
--  enqueues one delivery per enabled webhook in the same transaction that
--  inserts the notification, and its delivery loop works the outbox off.

CREATE TABLE webhooks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    url         text NOT NULL CHECK (url ~ '^https?://'),   -- only http:// is delivered for now
    secret      text NOT NULL,                  -- HMAC-SHA256 key for X-PhantomWatch-Signature
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user_idx ON webhooks (user_id) WHERE enabled;

--  One row per (webhook, notification). A row stays 'pending' until it is
--  delivered (2xx) or has used up its attempts ('failed'). next_attempt_at
--  doubles as a lease: the delivery loop pushes it forward when it claims a
--  row, so a notifier that dies mid-delivery leaves the row to be retried.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id       bigint NOT NULL REFERENCES webhooks ON DELETE CASCADE,
    notification_id  bigint NOT NULL REFERENCES notifications ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, notification_id)
);
--  The delivery loop asks only for due pending rows.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_notification_idx ON webhook_deliveries (notification_id);

--  The cool-down asks for a port's latest phantom notification.
CREATE INDEX notifications_port_idx ON notifications (port_id, id DESC);
