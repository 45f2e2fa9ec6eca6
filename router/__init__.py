"""The data plane: a host-based reverse proxy in front of every app.

Public surface for other packages (they meet here, never in internals):
``router.routes`` (the route table and its wire format), ``router.activity``
(what the agent reads to decide idleness), ``router.waking`` (the ``Waker``
seam the agent implements) and ``router.accesslog`` (the ``LogSink`` seam the
logs service implements).
"""
