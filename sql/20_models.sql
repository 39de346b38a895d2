-- Models as data, the forecasts they produce, and the log of predictions handed out.

-- The key that signs model bytes. Only the extension owner can read it; created with the first model,
-- so that a dump restores the original key rather than colliding with a fresh one.
CREATE TABLE pganalytics_ml.model_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea NOT NULL CHECK (pg_catalog.length(key) OPERATOR(pg_catalog.>=) 32)
);
COMMENT ON TABLE pganalytics_ml.model_key IS
    'HMAC key of model bytes; readable only by the extension owner';
REVOKE ALL ON pganalytics_ml.model_key FROM PUBLIC;

CREATE SEQUENCE pganalytics_ml.models_model_id_seq;
CREATE TABLE pganalytics_ml.models (
    model_id         bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pganalytics_ml.models_model_id_seq'),
    server_id        text NOT NULL,
    model_type       text NOT NULL,
    version          integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    lookback_days    integer NOT NULL,
    parameters       jsonb NOT NULL,
    metrics          jsonb NOT NULL,
    calibration      jsonb NOT NULL,
    feature_names    text[] NOT NULL,
    sklearn_version  text NOT NULL,
    numpy_version    text NOT NULL,
    python_version   text NOT NULL,
    model            bytea NOT NULL,
    signature        bytea NOT NULL,
    is_active        boolean NOT NULL DEFAULT false,
    activated_at     timestamptz,
    UNIQUE (server_id, version)
);
ALTER SEQUENCE pganalytics_ml.models_model_id_seq OWNED BY pganalytics_ml.models.model_id;
CREATE UNIQUE INDEX models_one_active ON pganalytics_ml.models (server_id) WHERE is_active;
COMMENT ON TABLE pganalytics_ml.models IS
    'Trained models: the pickled estimator, its HMAC signature, metrics and calibration; one active per server';

CREATE TABLE pganalytics_ml.forecasts (
    server_id            text NOT NULL,
    queryid              bigint NOT NULL,
    predicted_ms         double precision NOT NULL,
    lower_ms             double precision NOT NULL,
    upper_ms             double precision NOT NULL,
    confidence           double precision NOT NULL,
    model_id             bigint,
    model_version        integer,
    source               text NOT NULL CHECK (source OPERATOR(pg_catalog.=) ANY (ARRAY['model', 'baseline'])),
    based_on             timestamptz NOT NULL,   -- end of the latest interval the forecast knew
    computed_at          timestamptz NOT NULL,
    -- The forecast that was current when the statement's next interval arrived, checked against it.
    checked_interval_end timestamptz,
    checked_observed_ms  double precision,
    checked_predicted_ms double precision,
    checked_upper_ms     double precision,
    above_upper_since    timestamptz,
    -- issue 12: the forecaster that dominated, what each forecaster proposed (ms, in
    -- combination.FORECASTERS order, NULL where it could not answer), and the regression alarm's state:
    -- the run of intervals above the bound that was current before the run began (frozen), beyond
    -- what the whole server slowed down in the same interval.
    forecaster           text,
    expert_ms            double precision[],
    consecutive_above    integer NOT NULL DEFAULT 0,
    reference_upper_ms   double precision,
    server_shift         double precision,
    alarm_upper_ms       double precision,
    -- the server's load level (median log mean over its statements' slow averages) and the statement's log
    -- calls per second at the first interval of the run: the kept bound moves by their change since
    reference_load       double precision,
    reference_rate       double precision,
    -- What the online combination has learned of the statement (forecasting.online; NULL before its first
    -- capture, and while pganalytics_ml.forecast_combination is off): written with the forecast, one row
    -- rewritten per statement and capture.
    load_mu              double precision,   -- the server-load forecaster: the statement's slow average (log)
    rate_log             double precision,   -- log calls/s of its latest interval (the alarm's rate excuse)
    load_sensitivity     double precision,   -- what the alarm (_after_capture) reads of the packed sums: the
    rate_elasticity      double precision,   --   server-load sensitivity and the rate elasticity they give
    season_seconds       double precision CHECK (season_seconds OPERATOR(pg_catalog.>) 0),  -- a known cycle
    -- What only the Python update reads, float8 little-endian (forecasting.online.pack): the running sums
    -- (online.SUMS, with the count of validated intervals that updated the weights), the statement's own
    -- weights of the forecasters and the log of what each proposed for the next interval. One value per statement to pass, where PL/Python converts arrays float by float.
    packed               bytea,
    PRIMARY KEY (server_id, queryid)
) WITH (fillfactor = 30);
-- Rewritten twice per statement in each capture's transaction (checked, then refreshed): neither old version
-- can be pruned before the commit, so a page needs room for two new versions of each of its rows for both to
-- be HOT updates. At 50, 4 in 10 were not (new index entries, and the table ten times its live size).
COMMENT ON TABLE pganalytics_ml.forecasts IS
    'Current forecast of each statement''s next interval mean, refreshed at each capture and activation, '
    'and what the online combination has learned to make it';

CREATE SEQUENCE pganalytics_ml.predictions_prediction_id_seq;
CREATE TABLE pganalytics_ml.predictions (
    prediction_id  bigint NOT NULL DEFAULT pg_catalog.nextval('pganalytics_ml.predictions_prediction_id_seq'),
    server_id      text NOT NULL,
    queryid        bigint NOT NULL,
    predicted_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    predicted_ms   double precision NOT NULL,
    lower_ms       double precision NOT NULL,
    upper_ms       double precision NOT NULL,
    confidence     double precision NOT NULL,
    model_id       bigint,
    model_version  integer,
    source         text NOT NULL,
    based_on       timestamptz NOT NULL,
    actual_ms      double precision,
    error_percent  double precision,
    accuracy_score double precision,
    within_interval boolean,
    validated_at   timestamptz,
    validated_by   text CHECK (validated_by OPERATOR(pg_catalog.=) ANY (ARRAY['observed', 'manual'])),
    forecaster     text,
    expert_ms      double precision[]
) PARTITION BY RANGE (predicted_at);  -- by UTC day, with a default partition (sql/25_partitions.sql)
ALTER SEQUENCE pganalytics_ml.predictions_prediction_id_seq OWNED BY pganalytics_ml.predictions.prediction_id;
COMMENT ON TABLE pganalytics_ml.predictions IS
    'Every logged prediction and, once known, the actual mean it is scored against';

-- issue 12: what the online combination and calibration learn per server (per statement: in forecasts).
CREATE TABLE pganalytics_ml.forecaster_pool (
    server_id     text PRIMARY KEY,
    weights       double precision[] NOT NULL,    -- pooled weights, lent to statements with little history
    q             double precision NOT NULL,      -- the tracked quantile of normalized scores
    q_start       double precision NOT NULL,      -- its start value (a training holdout, or the default)
    recent_scores double precision[] NOT NULL,    -- the latest live scores, for `confidence`
    load_level    double precision NOT NULL,      -- the server's load level at the latest capture (log)
    load_ar       double precision[],             -- its AR(1) fit: count, means, covariance, variance, capture
    load_levels   double precision[],             -- its latest levels, oldest first (at most 120)
    updates       integer NOT NULL,
    updated_at    timestamptz NOT NULL
);
COMMENT ON TABLE pganalytics_ml.forecaster_pool IS
    'Per server: pooled forecaster weights and the live-calibrated interval quantile';

SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.forecaster_pool', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.model_key', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.models', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.models_model_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.forecasts', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.predictions', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.predictions_prediction_id_seq', '');

-- The plan model trained with each model (whatif/plan_model.py): a statement's mean time from its plan, across
-- statements. Signed with the models' key; removed with its model.
CREATE SEQUENCE pganalytics_ml.plan_models_plan_model_id_seq;
CREATE TABLE pganalytics_ml.plan_models (
    plan_model_id    bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pganalytics_ml.plan_models_plan_model_id_seq'),
    model_id         bigint NOT NULL UNIQUE REFERENCES pganalytics_ml.models (model_id) ON DELETE CASCADE,
    server_id        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    statements       integer NOT NULL,  -- statements with a plan it was trained on
    feature_names    text[] NOT NULL,
    metrics          jsonb NOT NULL,    -- grouped-holdout q-errors of the model and of the cost baseline
    calibration      jsonb NOT NULL,    -- the interval's conformal quantile of absolute log errors
    sklearn_version  text NOT NULL,
    model            bytea NOT NULL,
    signature        bytea NOT NULL
);
ALTER SEQUENCE pganalytics_ml.plan_models_plan_model_id_seq OWNED BY pganalytics_ml.plan_models.plan_model_id;
CREATE INDEX plan_models_server ON pganalytics_ml.plan_models (server_id, plan_model_id);
COMMENT ON TABLE pganalytics_ml.plan_models IS
    'Plan models: a statement''s mean time from its plan, data and load, across statements; pickled and signed, '
    'one per model trained with enough planned statements';
REVOKE ALL ON pganalytics_ml.plan_models FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_models', '');
SELECT pg_catalog.pg_extension_config_dump('pganalytics_ml.plan_models_plan_model_id_seq', '');

-- The row pgml_predict returns (the SQL contract), also used by pgml_predict_all.
CREATE TYPE pganalytics_ml.prediction AS (
    prediction_id               bigint,
    query_hash                  bigint,
    predicted_execution_time_ms double precision,
    lower_bound_ms              double precision,
    upper_bound_ms              double precision,
    confidence                  double precision,
    model_id                    bigint,
    model_version               integer,
    source                      text,
    predicted_at                timestamptz,
    server_id                   text,
    based_on                    timestamptz,
    logged                      boolean,
    query                       text,         -- the statement's text, shortened to 80 characters for reading
    forecaster                  text,
    total_cost                  double precision,  -- the optimizer's total cost of the plan (captured, or what-if)
    plan_fingerprint            text,              -- that plan's shape (pganalytics_ml.plans.fingerprint)
    scenario                    jsonb,             -- what was assumed: {"scenario": "current"} unless asked
    recommended_indexes         text[],            -- 'optimized': the hypothetical indexes applied
    optimization_suggestion     text               -- 'optimized': what they would change, in one sentence
);
COMMENT ON TYPE pganalytics_ml.prediction IS 'One prediction as pgml_predict and pgml_predict_sql return it';

CREATE TYPE pganalytics_ml.model_summary AS (
    model_id                     bigint,
    server_id                    text,
    model_type                   text,
    version                      integer,
    created_at                   timestamptz,
    is_active                    boolean,
    activated_at                 timestamptz,
    training_samples             integer,
    r_squared                    double precision,
    rmse                         double precision,
    mae                          double precision,
    q_error_p50                  double precision,
    q_error_p90                  double precision,
    baseline_last_q_error_p90    double precision,
    baseline_longrun_q_error_p90 double precision,
    interval_coverage            double precision,
    sklearn_version              text,
    size_bytes                   integer
);
COMMENT ON TYPE pganalytics_ml.model_summary IS 'One model as pgml_models lists it';

CREATE TYPE pganalytics_ml.training_result AS (
    model_id                     bigint,
    model_type                   text,
    server_id                    text,
    r_squared                    double precision,
    rmse                         double precision,
    mae                          double precision,
    training_samples             integer,
    holdout_samples              integer,
    q_error_p50                  double precision,
    q_error_p90                  double precision,
    q_error_p95                  double precision,
    baseline_last_q_error_p90    double precision,
    baseline_longrun_q_error_p90 double precision,
    interval_coverage            double precision,
    active_model_q_error_p90     double precision,
    activated                    boolean,
    feature_importance           jsonb,
    samples_available            bigint,
    samples_used                 integer,
    sampled                      boolean,
    estimated_memory_mb          double precision,
    combination_q_error_p50      double precision,
    combination_q_error_p90      double precision,
    model_weight                 double precision,
    forecasters                  jsonb,
    forecaster_note              text,
    plan_model_id                bigint,
    plan_model_statements        integer,
    plan_model_q_error_p50       double precision,
    plan_model_q_error_p90       double precision,
    plan_cost_q_error_p50        double precision,
    plan_cost_q_error_p90        double precision,
    plan_model_note              text
);
COMMENT ON TYPE pganalytics_ml.training_result IS 'One trained model as pgml_train returns it';
