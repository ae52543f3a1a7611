"""skimserve on Ray Serve: one deployment whose replicas each run the whole FastAPI app (create_app: every
model, /classify, /qa, /v2, /metrics) behind Ray's HTTP proxy. Same app, same dataplane, no copied
request logic; Ray adds the replicas, the proxy's load balancing and autoscaling on ongoing requests.

One command, from a checkout (or anywhere `service` is installed with the `ray` extra):

    PYTHONPATH=. serve run deploy/ray/serve.yaml   # replicas and autoscaling: the file's `deployments`

The application's `args` are skimserve settings (models_dir, kernel, pool_threads, ...: the names in
service/config.py; SKIMSERVE_* variables count too, as for `skimserve serve`), checked on the driver.
Metrics: with PROMETHEUS_MULTIPROC_DIR in the runtime_env (deploy/ray/serve.yaml sets it), the replicas
of a node share prometheus-client's multiprocess files, so /metrics from any replica reports all of them;
Ray exports its own serve_* metrics (ongoing requests, replicas) from each node. Ray is imported here
only: the plain server never needs it.
"""
from __future__ import annotations

import os
from typing import Any

from ray import serve

from .config import Settings

DEPLOYMENT = "skimserve"


def replica_app(settings: Settings):
    """The app of one replica (built there, not on the driver), from settings checked on the driver."""
    import logging

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before service.metrics is imported: it opens files there
        os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    from .api.app import create_app

    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    return create_app(settings)


def deployment(args: dict[str, Any] | None = None) -> serve.Deployment:
    """The deployment; num_replicas, autoscaling_config, ray_actor_options come from the config file or
    `.options(...)`."""
    settings = Settings.from_env(**(args or {}))  # a bad setting fails here, on the driver, with its name

    def build():  # a plain function: what serve.ingress takes as an app builder, run on each replica
        return replica_app(settings)

    return serve.deployment(serve.ingress(build)(), name=DEPLOYMENT)


def build_app(args: dict[str, Any]) -> serve.Application:
    """Ray Serve's application builder (`import_path: service.ray_app:build_app` in deploy/ray/serve.yaml)."""
    return deployment(args).bind()
