--  PhantomWatch schema, migration 017 (mqtt): smart plugs over MQTT.
--
--  A device's MQTT name is its broker user name and the topic it publishes
--  under (Tasmota tele/<name>/..., Shelly Gen2+ and ESPHome <name>/...,
--  Shelly Gen1 shellies/<name>/...); its password is the device token, so
--  the broker checks the same token hashes as the gateway and holds no
--  copy. Each (device, channel) a plug reports maps to one port, created on
--  first sight (is_new until the owner has seen it) or mapped by hand.
ALTER TABLE devices ADD COLUMN mqtt_name text UNIQUE
    CHECK (mqtt_name ~ '^[a-z0-9][a-z0-9-]{2,31}$');
UPDATE devices SET mqtt_name = 'pw-' || substr (md5 (random ()::text || id::text), 1, 10)
 WHERE mqtt_name IS NULL;
ALTER TABLE devices ALTER COLUMN mqtt_name
    SET DEFAULT 'pw-' || substr (md5 (random ()::text || clock_timestamp ()::text), 1, 10);
ALTER TABLE devices ALTER COLUMN mqtt_name SET NOT NULL;

CREATE TABLE mqtt_channels (
    device_id   bigint NOT NULL REFERENCES devices ON DELETE CASCADE,
    channel     text NOT NULL CHECK (length (channel) BETWEEN 1 AND 64),
    port_id     uuid NOT NULL REFERENCES ports ON DELETE CASCADE,
    is_new      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now (),
    PRIMARY KEY (device_id, channel)
);
CREATE UNIQUE INDEX mqtt_channels_port_idx ON mqtt_channels (port_id);
