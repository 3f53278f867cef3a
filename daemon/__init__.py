"""specd's daemon: the speculative-decoding engine, the HTTP server and process management."""

__version__ = "0.1.0"
