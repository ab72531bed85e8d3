"""HTTP event intake: parse, verify, coalesce, enqueue (and spool while Redis is away)."""
