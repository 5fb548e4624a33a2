"""The sinks: each decides only where a finished record goes."""
