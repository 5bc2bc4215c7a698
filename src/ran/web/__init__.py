"""``ran serve``: a local web page on an always-alive session (needs the ``serve`` extra).

:mod:`ran.web.host` holds the session and its one worker; :mod:`ran.web.app` is the Starlette app around
it; ``static/`` is the page (HTML, JS, CSS and the vendored uPlot charts), the only files the app serves.
"""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
