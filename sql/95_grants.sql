-- Read access to the captured history. Nobody but the extension's own functions writes these tables.
-- Statement text is normalized by pg_stat_statements (constants become $1, $2 ...), and every string
-- literal it keeps (utility statements are kept as written, passwords included) is stored as '***'.
GRANT SELECT ON pganalytics_ml.snapshots, pganalytics_ml.statements, pganalytics_ml.query_stats TO pgml_reader;
