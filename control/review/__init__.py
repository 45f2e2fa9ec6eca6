"""Review apps: one app per pull request, from GitHub webhooks.

``github`` checks and reads deliveries, ``appjson`` reads the repository's
app.json, ``plan`` turns an event into actions (pure), and ``webhook`` is the
aiohttp endpoint that hands those actions to whatever applies them.
"""
