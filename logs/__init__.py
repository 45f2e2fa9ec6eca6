"""Live and archived logs: Fluent forward receiver, per-app ring buffer, SSE tail, S3 archive."""
