"""The HTTP side: /metrics, health, and the JSON API (aiohttp)."""
