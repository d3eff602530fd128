"""Retention and data-subject rights: TTL policy, purge, export, backups, audit."""
