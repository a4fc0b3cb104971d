"""The HTTP API (FastAPI): health and metrics now; Open311, incidents, devices and rules to come."""
