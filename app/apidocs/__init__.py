"""/docs and /redoc with their assets served by the service itself (they work offline)."""
