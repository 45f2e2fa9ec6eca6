"""The control plane's HTTP API: Heroku Platform API shaped, JSON, described by /openapi.json.

``routes.py`` is the one table of routes: it registers the aiohttp handlers
and generates the OpenAPI document, so the two cannot drift apart.
"""
