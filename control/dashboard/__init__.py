"""The dashboard: the control plane's web pages, served by its API process (docs/dashboard.md)."""
