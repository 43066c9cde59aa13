"""The Twelve Labs HTTP client and API key resolution: nothing else in watcherd talks HTTP
to the API."""
