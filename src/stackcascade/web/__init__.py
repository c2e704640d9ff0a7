"""The web console: server-rendered pages over the same services the API uses, live through SSE."""
