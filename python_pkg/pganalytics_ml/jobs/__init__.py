"""Jobs: the durable queue that pg_cron drains (training, capture, validation, clean-up)."""
