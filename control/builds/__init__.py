"""Builds: a source at a commit in, a runnable artifact out.

``local`` builds on this machine (git, a virtualenv or ``npm ci``, a
dependency cache per app); ``cnb`` describes the Kubernetes Job that runs the
Cloud Native Buildpacks lifecycle instead. Both report the same ``Artifact``
shape and stream their output to a ``LogSink``.
"""
