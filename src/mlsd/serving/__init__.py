"""Step 6 of the book, deployment and serving: model bundles, the HTTP service, the durable
event log, degradation and the load benchmark."""
