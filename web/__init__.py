"""Web endpoints besides event intake: health, the admin API, the RQ dashboard, Prometheus metrics."""
