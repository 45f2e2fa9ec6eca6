"""The jobs the worker runs: importable by both the web process and the worker."""

import os


def add(a, b):
    return a + b


def environment():
    """The worker's whole environment, as the job sees it."""
    return dict(os.environ)
