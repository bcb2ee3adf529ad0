"""Storage: opening databases by URI, serving an embedded file, being told about commits."""
