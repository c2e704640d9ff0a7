"""Outbound webhooks: the HTTP client with its target rules, and the dispatcher loop."""
