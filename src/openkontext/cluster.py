"""Model workers as Ray actors: one ``WorkerProcess`` per GPU (or per CPU slot) anywhere in a Ray cluster.

The job store stays the source of truth. An actor only runs worker threads that claim jobs from the shared store
(PostgreSQL) and write results to the shared storage (S3, or a shared folder), exactly like ``openkontext worker``;
the API replicas never call the actors. So a dead actor or node loses no job: its leases lapse and another worker
takes the jobs over, while Ray restarts the actor (``max_restarts=-1``), on another node if its own is gone.

Actors are named ``openkontext-worker-<i>`` and detached in the ``openkontext`` namespace: the pool outlives the
command that sized it, and any later ``scale`` / ``status`` / ``stop`` finds it by name. Scaling down drains the
removed actors first (no new claims, running jobs end) and only then kills them.

Each actor builds its settings from the ``OPENKONTEXT_*`` variables handed to it (``runtime_env``), so a node needs
the package installed and nothing else configured.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

NAMESPACE = "openkontext"
ACTOR_PREFIX = "openkontext-worker-"
READY_TIMEOUT_S = 600.0  # loading and compiling a FLUX.1-sized model on a cold node takes minutes
REMOVE_TIMEOUT_S = 60.0  # from ray.kill to the actor's name being free

log = logging.getLogger(__name__)


class ModelWorker:
    """The actor: a ``WorkerProcess`` started in ``__init__`` (Ray runs it again when it restarts the actor)."""

    def __init__(self):
        from .config import Settings
        from .quiet import quiet_libraries
        from .runtime import WorkerProcess

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        quiet_libraries()
        self.process = WorkerProcess(Settings(), role="ray")
        self.process.start()

    def report(self) -> dict:
        import ray

        report = dataclasses.asdict(self.process.pool.report())
        return {**report, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def drain(self, timeout: float) -> bool:
        return self.process.drain(timeout)


@dataclass(frozen=True)
class ActorState:
    name: str
    report: dict | None  # None: the actor did not answer in time (loading its model, or being restarted)


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ('auto': the one this machine is part of)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)


def actor_names() -> list[str]:
    """The pool's actors, by index."""
    import ray

    names = [name for name in ray.util.list_named_actors() if name.startswith(ACTOR_PREFIX)]
    return sorted(names, key=_index)


def _index(name: str) -> int:
    match = re.fullmatch(re.escape(ACTOR_PREFIX) + r"(\d+)", name)
    return int(match.group(1)) if match else 1 << 30


def worker_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``OPENKONTEXT_*`` settings an actor starts with: this process's environment, then ``overrides``."""
    env = {name: value for name, value in os.environ.items() if name.startswith("OPENKONTEXT_")}
    env.update(overrides or {})
    return env


def default_gpus_per_worker() -> float:
    """1 when the cluster has GPUs (one actor per GPU), else 0 (CPU actors)."""
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def scale(size: int, *, env: Mapping[str, str], gpus: float, cpus: float, drain_timeout_s: float,
          ready_timeout_s: float = READY_TIMEOUT_S) -> list[ActorState]:  # fmt: skip
    """Make the pool ``size`` actors: start the missing ones (and wait until each has loaded its model), drain and
    remove the ones beyond ``size``. Actors already running keep running, their jobs untouched."""
    import ray

    existing = actor_names()
    started = []
    for index in range(size):
        name = f"{ACTOR_PREFIX}{index}"
        if name in existing:
            continue
        actor = (
            ray.remote(ModelWorker)
            .options(name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=-1, max_concurrency=4,
                     num_gpus=gpus, num_cpus=cpus, runtime_env={"env_vars": dict(env)})  # fmt: skip
            .remote()
        )
        started.append((name, actor))
    for name, actor in started:
        try:
            ray.get(actor.report.remote(), timeout=ready_timeout_s)
        except Exception as exc:  # it could not start (bad settings, no resources): remove it, say why
            ray.kill(actor, no_restart=True)
            raise ClusterError(f"{name} did not start: {_reason(exc)}") from None
    removed = [name for name in existing if _index(name) >= size]
    _remove(removed, drain_timeout_s)
    return status()


def _lookup(names: list[str]) -> list[tuple[str, object]]:
    """The handles of the named actors that still exist: one listed a moment ago may have died since (an actor whose
    restart failed, or one another command just removed)."""
    import ray

    found = []
    for name in names:
        try:
            found.append((name, ray.get_actor(name, namespace=NAMESPACE)))
        except ValueError:
            log.warning("%s: no longer exists", name)
    return found


def _remove(names: list[str], drain_timeout_s: float) -> None:
    import ray

    found = _lookup(names)
    names, actors = [name for name, _ in found], [actor for _, actor in found]
    drains = [actor.drain.remote(drain_timeout_s) for actor in actors]
    for name, actor, drain in zip(names, actors, drains):
        try:
            drained = ray.get(drain, timeout=drain_timeout_s + 30)
            if not drained:
                log.warning("%s: running jobs did not end within %.0f s; handed back to the queue", name,
                            drain_timeout_s)  # fmt: skip
        except Exception as exc:  # dead or restarting: its jobs run again from their leases
            log.warning("%s: could not drain (%s); its jobs run again from their leases", name, _reason(exc))
        ray.kill(actor, no_restart=True)
    # ray.kill returns before the actor is gone: wait until its name is free (a status or scale right after this
    # would list it, and a scale up could not create it again).
    deadline = time.monotonic() + REMOVE_TIMEOUT_S
    while set(names) & set(actor_names()) and time.monotonic() < deadline:
        time.sleep(0.2)


def status(timeout_s: float = 5.0) -> list[ActorState]:
    import ray

    pending = {name: actor.report.remote() for name, actor in _lookup(actor_names())}
    deadline = time.monotonic() + timeout_s
    states = []
    for name, ref in pending.items():
        try:
            states.append(ActorState(name, ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))))
        except Exception:
            states.append(ActorState(name, None))
    return states


def stop(drain_timeout_s: float) -> None:
    _remove(actor_names(), drain_timeout_s)


class ClusterError(RuntimeError):
    pass


def _reason(exc: BaseException) -> str:
    """The first line that says why an actor failed (Ray wraps the actor's own exception in its traceback)."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line or "error:" in line:
            return line
    return lines[-1] if lines else type(exc).__name__
