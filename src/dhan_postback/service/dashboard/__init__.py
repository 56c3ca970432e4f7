"""The delivery dashboard: deliveries, attempts, endpoints and replay, for people.

``create_dashboard(node)`` returns a Starlette app that the service mounts at
``/dashboard``. See :mod:`.app` for who may see what.
"""

from __future__ import annotations

from .app import create_dashboard
from .health import EndpointHealth

__all__ = ["EndpointHealth", "create_dashboard"]
