--  PhantomWatch schema, migration 011 (store): how long each port reported.
--
--  Waste is projected over the hours a port reported (docs/figures-and-api.md),
--  so each minute rollup keeps, beside the energy of the intervals that start
--  in it, their summed length: intervals longer than the gap are offline and
--  count neither energy nor time.
ALTER TABLE readings_minute ADD COLUMN reported_seconds double precision NOT NULL DEFAULT 0;
