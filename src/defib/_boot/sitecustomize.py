"""Loaded by every Python process that ``defib run`` starts (via PYTHONPATH).

It costs nothing until torch is imported: then defib attaches its hooks. Any
other ``sitecustomize`` on the path (a virtualenv's, a distribution's) is
still run afterwards, so defib never hides one.
"""

import importlib.machinery
import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))

if os.environ.get("DEFIB_REPORT_DIR"):
    try:
        from defib.stages.run import start

        def _trackers(live):
            from defib.integrations.trackers import from_env

            from_env(live)

        start(extend=_trackers)
    except Exception as exc:  # never stop the user's script from starting
        print(f"defib: could not attach ({type(exc).__name__}: {exc}); the script runs unwatched", file=sys.stderr)

_others = [p for p in sys.path if os.path.abspath(p or ".") != _here]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _others)
if _spec is not None and _spec.loader is not None:
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
