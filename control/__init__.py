"""The control plane: apps, config, releases, add-ons, the HTTP API and the ``slipway`` CLI."""
