"""One Prometheus exporter for all Postgres add-ons and one for all Redis add-ons."""
