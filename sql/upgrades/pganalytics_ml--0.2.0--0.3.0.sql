-- 0.2.0 -> 0.3.0

-- issue 13 (bounded training)
-- pgml_train reports the sample it trained on (samples_available, samples_used, sampled,
-- estimated_memory_mb): a new result type, so the function is dropped here and re-created with the
-- other PL/Python functions below. Its settings (pganalytics_ml.training_max_samples,
-- training_max_samples_per_statement, training_memory_limit) are read with current_setting(): nothing
-- to create.
DROP FUNCTION @extschema@.pgml_train(integer, text, text);
