"""The HTTP/WebSocket gateway (FastAPI). Never imports torch."""
