"""HTTP handlers: event intake (parse, verify, coalesce, enqueue), health, and the admin API."""
