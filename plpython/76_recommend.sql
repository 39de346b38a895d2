-- Body of pgml_recommend_indexes (sql/74_recommend.sql), in PL/Python.

CREATE FUNCTION pganalytics_ml._recommend_indexes(server_id text, top_statements integer,
                                                  min_speedup double precision, max_indexes integer)
RETURNS TABLE (recommendation_id bigint, index_sql text, table_name text, columns text[], query_hashes bigint[],
               saved_ms_per_s double precision, saved_lower_ms_per_s double precision,
               saved_upper_ms_per_s double precision, speedups double precision[], estimated_size_bytes bigint,
               source text, recommended_at timestamptz)
LANGUAGE plpython3u
VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 1
SET lc_numeric = 'C'
AS $$
GD.get('pganalytics_ml') == '@PGML_VERSION@' or plpy.execute('SELECT pganalytics_ml._load_python()')
from pganalytics_ml.whatif import recommend
return recommend.recommend_sql(plpy, server_id, top_statements, min_speedup, max_indexes)
$$;
COMMENT ON FUNCTION pganalytics_ml._recommend_indexes(text, integer, double precision, integer) IS
    'Body of pgml_recommend_indexes in PL/Python, behind its error-reporting wrapper';
REVOKE ALL ON FUNCTION pganalytics_ml._recommend_indexes(text, integer, double precision, integer) FROM PUBLIC;
