"""The postback service: registry, ingest API, outbox and dispatcher."""
