"""webhooks layer."""
