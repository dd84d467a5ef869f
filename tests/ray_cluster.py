"""A real, local, multi-node Ray cluster for the tests: a head node and worker nodes, each its own ``ray start``
(raylet, agents and the workers it spawns) on loopback, with its own temp dir and free ports, so a test can kill one
node — every process of it, as when a machine dies — and leave the others running.

Each node is ``ray start --block`` in a new session: every process Ray starts for that node (raylet, agents, actor
workers — which get process groups of their own, but stay in the session) carries the session id, so a node is
killed, and the cluster cleaned up, by session, without touching any other Ray on the machine (``ray stop`` would).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import free_port

RAY = str(Path(sys.executable).with_name("ray"))


def session_of(pid: int) -> int | None:
    """The session id of a process (None: it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])  # after the command: state, ppid, pgrp, session …


def session_members(session: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and session_of(int(entry.name)) == session:
            members.append(int(entry.name))
    return members


def base_env() -> dict[str, str]:
    """The environment Ray's processes start with: no OPENKONTEXT_* settings of the caller's, one thread each."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("OPENKONTEXT_", "RAY_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


class RayNode:
    def __init__(self, folder: Path, arguments: list[str], cpus: int):
        self.folder = folder
        self.temp_dir = folder / "ray"
        self.log_path = folder / "ray-start.log"
        ports = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]  # fmt: skip
        self.command = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus),
                        "--disable-usage-stats", "--temp-dir", str(self.temp_dir),
                        "--min-worker-port", "0", "--max-worker-port", "0",  # workers: ports from the OS
                        *[part for option in ports for part in (option, str(free_port()))], *arguments]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self) -> RayNode:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # ray start writes it (its own copy of the descriptor)
            self.process = subprocess.Popen(self.command, env=base_env(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
        return self

    def wait_started(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not finish in {timeout:.0f} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def session(self) -> int:
        return self.process.pid  # the session leader: start_new_session

    def owns(self, pid: int) -> bool:
        """Whether a process (an actor's, say) runs on this node."""
        return session_of(pid) == self.session

    def kill(self) -> None:
        """SIGKILL every process of this node at once, as if its machine had died."""
        if self.process is None:
            return
        for _ in range(5):  # a process may be forking while we kill: go again until none is left
            members = session_members(self.session)
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def worker_logs(self, pattern: str = "worker-*.err") -> str:
        """What the Ray workers of this node (actors included) wrote to stderr, where our logging goes (Ray moves the
        files of dead workers to logs/old/)."""
        found = self.temp_dir.glob(f"session_*/logs/**/{pattern}")
        paths = sorted({path.resolve() for path in found})  # each file once: session_latest links to the session
        return "".join(f"{path}: {line}\n" for path in paths for line in path.read_text(errors="replace").splitlines())


class RayCluster:
    """``nodes[0]`` is the head (the GCS: killing it ends the cluster); the others join it."""

    def __init__(self, cpus: list[int]):
        # Short paths: Ray puts unix sockets in its temp dir, and a socket path has at most 107 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="okray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        head = ["--head", "--port", str(self.port), "--include-dashboard=false", "--dashboard-port", str(free_port())]
        self.nodes = [RayNode(self.folder / "node0", head, cpus[0])]
        self.nodes += [RayNode(self.folder / f"node{index}", ["--address", self.address], count)
                       for index, count in enumerate(cpus[1:], start=1)]  # fmt: skip

    def start(self, timeout: float = 180) -> RayCluster:
        try:
            self.nodes[0].start().wait_started(timeout)
            for node in self.nodes[1:]:
                node.start()
            for node in self.nodes[1:]:
                node.wait_started(timeout)
            self.wait_nodes(len(self.nodes), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def alive_nodes(self) -> int:
        done = subprocess.run([RAY, "status", "--address", self.address], capture_output=True, text=True,
                              env=base_env(), timeout=60)  # fmt: skip
        if done.returncode != 0:
            return 0
        active = done.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def wait_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_nodes() != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray cluster does not have {count} live nodes after {timeout:.0f} s")
            time.sleep(1)

    def node_of(self, pid: int) -> RayNode | None:
        return next((node for node in self.nodes if node.owns(pid)), None)

    def worker_logs(self) -> str:
        return "".join(node.worker_logs() for node in self.nodes)

    def log_of(self, pid: int) -> str:
        """What the Ray worker (an actor) with this pid wrote to stderr."""
        return "".join(node.worker_logs(f"worker-*-{pid}.err") for node in self.nodes)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        if not os.environ.get("OPENKONTEXT_TEST_KEEP_RAY"):  # set it to read the nodes' logs after a failure
            shutil.rmtree(self.folder, ignore_errors=True)
