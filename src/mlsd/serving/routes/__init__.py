"""The service's routers, one module per group of endpoints: recommendations (and similar
videos), events, operations (health, readiness, metrics, reload)."""
