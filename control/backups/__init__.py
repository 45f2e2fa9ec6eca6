"""Postgres backups, Heroku's PG Backups as the habit, each one proven by a restore.

``crypto.py`` seals dumps in authenticated segments; ``objects.py`` streams
them to and from S3 in parts; ``pg.py`` runs pg_dump and pg_restore and
compares table statistics; ``schedule.py`` is the pure core of schedules,
retention and staleness; ``records.py`` the store's tables; ``service.py``
the async shell; ``api.py`` the HTTP routes. docs/backups.md tells the story.
"""
