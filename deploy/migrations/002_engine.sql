--  PhantomWatch schema, migration 002 (detector/store).

--  The store rewrites a port's row on every status change and at most once
--  a second otherwise; half-empty pages let those updates stay HOT (same
--  page, no index change), which measured clearly faster than the default.
ALTER TABLE ports SET (fillfactor = 50);

--  Always-on baseline of a port in W (1st-percentile bin of the last 24 h),
--  from the detector's verdicts; NULL until known. 004_api.sql adds it too.
ALTER TABLE ports ADD COLUMN IF NOT EXISTS always_on_watts double precision;
