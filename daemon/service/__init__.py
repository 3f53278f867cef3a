"""Serving the engine to many clients: the request queue and its worker (scheduler) and the metrics."""
