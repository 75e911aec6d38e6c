--  PhantomWatch schema, migration 016 (gateway): a port's external key.
--
--  Energy firmware that speaks the Emoncms input API (emonhub, IoTaWatt,
--  ESP sketches) names its values by node and input, not by our port
--  uuid: a port takes node N's input I when its external_key is "N:I".
--  One owner cannot map one input to two ports. The gateway reads the
--  mapping per Emoncms request (not from its cache), so the cache's
--  trigger does not watch the column.
ALTER TABLE ports ADD COLUMN external_key text
    CHECK (external_key IS NULL OR (length (external_key) BETWEEN 3 AND 129
                                    AND external_key ~ '^[^:]+:[^:]+$'));
CREATE UNIQUE INDEX ports_external_key_idx ON ports (user_id, external_key)
    WHERE external_key IS NOT NULL;
