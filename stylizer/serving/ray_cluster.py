"""Starting or joining Ray the one way both Ray paths do (``batch --ray`` on Ray Data, ``app.py --ray`` on Ray Serve).

Anyone who reaches a Ray dashboard, job or client port can run code (Ray's security page), so a local
instance runs no dashboard, and relies on the token Ray 2.59 and later require (``RAY_AUTH_MODE=token``,
the default): a local instance makes its own in ``~/.ray/auth_token``, and joining a cluster needs that
cluster's, in ``RAY_AUTH_TOKEN`` or the file ``RAY_AUTH_TOKEN_PATH`` names (Ray reads both). Ray offers no
way to keep a local instance on loopback: it turns 127.0.0.1 into the machine's address and its services
listen on every interface, which is why the token matters (README, *Scale out*).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError

NOT_JOINED = (
    "could not join the Ray cluster at {address} ({reason}); if it uses token authentication (RAY_AUTH_MODE=token, "
    "Ray's default since 2.59), give this machine its token in RAY_AUTH_TOKEN, or in the file RAY_AUTH_TOKEN_PATH names"
)


def start_or_join(ray: Any, address: str | None) -> None:
    """``ray.init`` for a local instance (``address`` None; no dashboard) or to join the cluster at ``address``.

    Raises:
        ConfigError: the cluster could not be joined, in one line naming the token variables.
    """
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, AuthenticationError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(NOT_JOINED.format(address=address, reason=reason)) from None
