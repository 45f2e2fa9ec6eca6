"""Request charts' data: a small rollup store fed by the routers, or Prometheus on Kubernetes.

``sketch``: a mergeable latency sketch (fixed log buckets). ``store``: per app per
minute (kept 2 h) and per 10 minutes (kept 7 days), bounded, saved to a file.
``tap``: what feeds it under ``slipway up`` (router lines, route-table state changes).
``source``: what the API reads (``RequestSource``), over the store or Prometheus.
"""
