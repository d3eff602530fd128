"""Videos on demand: recordings of publishes and uploads, packaged as HLS."""
