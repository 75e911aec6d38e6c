--  PhantomWatch schema, migration 005 (gateway core).
--
--  Gateways stamp a device token's use in memory and write it to
--  devices.token_last_used_at at most once a minute. That write must not
--  notify every gateway's cache, which would then re-read each device it
--  just stamped: only the columns the cache reads notify now.
DROP TRIGGER IF EXISTS devices_cache ON devices;
CREATE TRIGGER devices_cache AFTER INSERT OR UPDATE OF user_id, token_hash, token_expires_at,
    previous_token_hash, previous_token_expires_at OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION phantom_cache_notify('device');
