"""Viewer analytics: ClickHouse store and schema, collector, enrichment, consent."""
