"""The page's side of Ray Serve: connect to (or deploy) the Stylizer application and stream jobs from it.

:class:`RemoteWorker` stands where the in-process worker stands for the page: its
:meth:`~RemoteWorker.run` is a run function whose updates come from a replica through
a Serve streaming handle, and closing it cancels the remote request. Importing this
module imports Ray.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayError, RayTaskError
from ray.serve.handle import DeploymentHandle

from ..config import Limits
from ..errors import StylizerError
from ..request import Request
from .jobs import JobUpdate, ModelInfo, check_job
from .outputs import OutputStore
from .ray_cluster import start_or_join
from .ray_replica import APP_NAME, DEPLOYMENT_NAME, Shipped, build

log = logging.getLogger(__name__)

REPLICA_LOST = "the server running this job stopped before it finished; please try again"


class ReplicaLostError(StylizerError):
    """The replica running a job died, or could not be reached."""


class RemoteWorker:
    """Runs the page's jobs on a Serve application's replicas.

    Args:
        handle: the application's deployment handle.
        concurrency: how many jobs may run at once (its replicas).
        limits: the page's caps (upload size, slider ranges).
        output_dir: where the results' files are written for the page; a temporary folder when omitted.
    """

    def __init__(self, handle: DeploymentHandle, concurrency: int, limits: Limits, output_dir: str | None = None) -> None:
        self.handle = handle
        self.concurrency = concurrency
        self.limits = limits
        self.outputs = OutputStore(output_dir, limits.output_ttl_s)
        info: ModelInfo = handle.info.remote().result()
        # One device per replica: the page runs as many jobs at once as the info lists devices.
        self.info = dataclasses.replace(info, devices=info.devices * concurrency)

    def check(self, image: Any, settings: Mapping[str, Any], *, preparing: bool = False) -> Request:
        """The job, checked here on the page's host against its caps, before anything travels to a replica."""
        return check_job(image, settings, self.info.defaults, self.limits, preparing=preparing)

    def run(self, request: Request) -> Iterator[JobUpdate]:
        """Run one Stylize job on a free replica, yielding its updates; closing the iterator cancels the remote job.

        Raises:
            StylizerError: the job's own user errors, or :class:`ReplicaLostError` when its replica died.
        """
        response = self.handle.options(stream=True).run.remote(request)
        try:
            for shipped in response:
                yield self._local(shipped)
        except RayTaskError as exc:
            if isinstance(exc.cause, StylizerError):
                raise exc.cause from None
            raise
        except RayError as exc:
            log.warning("a Serve replica was lost during a job: %s", exc)
            raise ReplicaLostError(REPLICA_LOST) from None
        finally:
            response.cancel()  # a no-op once the stream has ended

    def _local(self, shipped: Shipped) -> JobUpdate:
        """The update with its result's files written on this host."""
        update = shipped.update
        if update.result is None:
            return update
        png, gif = self.outputs.write(shipped.files)
        return dataclasses.replace(update, result=dataclasses.replace(update.result, png_path=png, gif_path=gif))


def connect(
    address: str | None, model: str, replicas: int, *, clip: str | None = None, limits: Limits, app_name: str = APP_NAME
) -> RemoteWorker:
    """Join (or start) a Ray cluster and return the page's worker, whose concurrency is the replica count.

    An application named ``app_name`` already running there (``serve run deploy/serve_config.yaml``)
    is used as it is; otherwise ``replicas`` replicas of ``model`` are deployed.

    Args:
        address: None starts a Ray instance here (see :mod:`stylizer.serving.ray_cluster`); ``auto`` or ``HOST:PORT`` joins a cluster.
    """
    start_or_join(ray, address)
    # No HTTP proxy: the page reaches the replicas through handles only (on a cluster already serving, Serve's own settings stay).
    serve.start(proxy_location="Disabled")
    running = serve.status().applications.get(app_name)
    if running is None or running.status != "RUNNING":
        handle = serve.run(build(model, replicas, clip=clip, limits=limits), name=app_name, route_prefix=None)
    else:
        handle = serve.get_app_handle(app_name)
        replicas = running.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", replicas)
        log.info("using the running Serve application %r with %d replicas", app_name, replicas)
    return RemoteWorker(handle, replicas, limits)
