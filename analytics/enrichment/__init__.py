"""Enrichment of a beacon from its request: where (geoip2), on what (user agent), and how
much of the address may be kept (the tenant's IP mode)."""
