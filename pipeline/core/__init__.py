"""What every job shares: the record schema, where a lake lives, the Delta table, config, errors, signals,
metrics and progress. Nothing here imports from the job packages (ingest, replay, query, custody)."""
