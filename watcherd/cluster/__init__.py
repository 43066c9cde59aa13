"""Several watcherd hosts on one drop share, coordinated through PostgreSQL.

Each host keeps its own SQLite database on local disk; PostgreSQL holds what
the hosts share: one claim per file (who owns it, until when, and the remote
ids another host needs to continue), the hosts' heartbeats, and the schema's
version. Nothing here is imported unless ``coordination:`` is configured
(``settings`` only reads the config section and needs no driver).
"""
