"""The state store: every fact of the control plane, in SQLite or PostgreSQL.

One schema (``schema.py``) and one migration history (``migrations/``) serve
both databases, through SQLAlchemy Core's async engines (aiosqlite, psycopg 3).
"""
