"""The data plane: a host-based reverse proxy in front of every app.

Public surface for other packages (they meet here, never in internals):
``router.routes`` (the route table and its wire format), ``router.activity``
(what the agent reads to decide idleness), ``router.waking`` (the ``Waker``
seam the agent implements) and ``router.accesslog`` (the ``LogSink`` seam the
logs service implements).
"""

import os as _os
import sys as _sys
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, SourceFileLoader

# The hot modules may be compiled with mypyc at install time (setup.py). With
# SLIPWAY_PURE_PYTHON=1 they are imported from their .py files even so: the
# same switch that keeps a build pure keeps a run pure (tracebacks, profilers,
# and the test suite's second pass over the interpreted router).
if _os.environ.get("SLIPWAY_PURE_PYTHON") == "1":
    for _path in __path__:
        _sys.path_importer_cache[_path] = FileFinder(_path, (SourceFileLoader, SOURCE_SUFFIXES))
