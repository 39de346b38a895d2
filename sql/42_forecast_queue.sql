-- Forecast refresh off the push's path (issue 18). A push of a remote server (pgml_ingest_stats) scores
-- what it observed at once, in SQL, then either refreshes the forecasts of the statements it brought, in
-- Python, inside the push ('inline', as before), or queues one coalesced 'forecast' job for its server
-- ('queued'), which the job worker drains: at most one such job waits per server, and it refreshes every
-- statement that ran since its forecast. Until it runs, pgml_predict answers from the forecasts of the
-- previous refresh: stale by at most one refresh.
--
-- pganalytics_ml.push_forecasts chooses: 'inline', 'queued', or 'auto' (the default): queued when this
-- database's pg_cron drain (pgml_schedule) is registered and active, inline otherwise, so that forecasts
-- never wait for a worker nobody runs.
CREATE FUNCTION pganalytics_ml._push_forecast_mode() RETURNS text
LANGUAGE plpgsql
STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_setting text := pganalytics_ml._setting('push_forecasts', 'auto');
    v_mode    text := lower(btrim(v_setting));
    v_drain   boolean;
BEGIN
    IF v_mode IN ('inline', 'queued') THEN
        RETURN v_mode;
    ELSIF v_mode <> 'auto' THEN
        RAISE EXCEPTION 'the setting pganalytics_ml.push_forecasts must be auto, inline or queued, got %',
            quote_literal(left(v_setting, 40))
            USING ERRCODE = '22023',
                  HINT = 'RESET pganalytics_ml.push_forecasts (auto: queued when the pg_cron drain is scheduled).';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 'inline';
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = ''pganalytics_ml:drain'' AND active'
            ' AND database = current_database())'
       INTO v_drain;
    RETURN CASE WHEN v_drain THEN 'queued' ELSE 'inline' END;
END
$$;
COMMENT ON FUNCTION pganalytics_ml._push_forecast_mode() IS
    'Whether a push refreshes its forecasts itself (inline) or queues a forecast job (queued), '
    'as pganalytics_ml.push_forecasts and the pg_cron drain decide';
REVOKE ALL ON FUNCTION pganalytics_ml._push_forecast_mode() FROM PUBLIC;
