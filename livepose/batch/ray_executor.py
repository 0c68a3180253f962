"""The Ray executor: one Ray actor per worker holds the models for its lifetime; the driver hands
each actor one video at a time and commits what comes back.

Model files travel to the actors through Ray's object store (no shared file system for models).
Inputs must be readable at the same path or URL from every node. Each actor writes a video's
outputs to its own scratch folder, returns their bytes and deletes them, so nothing half-written
ever reaches the output folder. An actor whose process dies mid-video (killed, node lost) is
restarted by Ray (`max_restarts`) and the video redone from the start (`max_task_retries`).
"""
import os
import shutil
import socket
import tempfile
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

RESTARTS = 3            # per actor; a video that kills its worker this often fails
PLACEMENT_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 3
RAY_EXTRA = "pip install 'livepose[cluster]'"


class RayUnavailable(ValueError):
    """Ray is missing or the cluster cannot be reached; the message says which and what to do."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def connect(address):
    """Connect to the cluster at `address` (`auto`, `HOST:PORT`, `ray://HOST:PORT`) or start one
    here (`local`: bound to 127.0.0.1, no dashboard, usage statistics off). Returns True when this
    call started or joined Ray (the caller shuts it down), False when the process was connected."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        return True
    check_address(address)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as error:
        raise RayUnavailable(f"Ray cluster {address}: cannot connect ({str(error).strip().splitlines()[0]}); start one "
                             "with `ray start --head`, or use --ray local") from None
    return True


def check_address(address):
    """For HOST:PORT and ray://HOST:PORT: one line within seconds for a closed port, before Ray's own
    retries (which take minutes); `auto` and `local` are checked by connecting."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        port = None
    if not host or not port:
        raise RayUnavailable(f"--ray {address}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise RayUnavailable(f"Ray cluster {address}: cannot connect ({error.strerror or error}); start one "
                             "with `ray start --head`, or use --ray local") from None


class PoseActor:
    """Lives in a Ray worker process (made remote in RayExecutor.run): writes the model files it
    was given to its own disk, opens them once, then processes one video per call."""

    def __init__(self, payload_box, settings, scratch):
        import ray

        from livepose.batch.worker import ModelFiles, open_estimator

        self.settings, self.estimator, self.problem = settings, None, None
        self.scratch = Path(scratch or tempfile.gettempdir()) / f"livepose-batch-{socket.gethostname()}-{os.getpid()}"
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            # the models' object-store ref comes boxed in a list: Ray keeps it alive for restarts
            # through the driver's reference, without the warning about top-level ref arguments
            payload = ray.get(payload_box[0])
            self.estimator = open_estimator(ModelFiles.unpacked(payload, self.scratch / "models"), settings)
        except Exception as error:  # e.g. an engine built for another GPU: this worker takes no videos
            self.problem = f"{socket.gethostname()} pid {os.getpid()}: {str(error).strip().splitlines()[0]}"

    def check(self):
        """None when ready, else why this worker cannot process videos."""
        return self.problem

    def process(self, job):
        import ray

        from livepose.batch.worker import process_job

        result = process_job(job, self.estimator, self.settings, self.scratch)
        result["worker"] = {"host": socket.gethostname(), "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()]}
        files = result.pop("files", {})
        result["data"] = {}
        for kind, path in files.items():
            result["data"][kind] = Path(path).read_bytes()
            Path(path).unlink()
        return result

    def close(self):
        if self.estimator is not None:
            self.estimator.close()
            self.estimator.detector.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class RayExecutor:
    """Runs jobs on `workers` Ray actors, each reserving `cpus` CPUs and `gpus` GPUs (Ray resources,
    so they land on nodes that have them); `run(jobs)` yields result dicts as videos finish, with
    the outputs' bytes under "data". `scratch`: where actors write (default: each node's temp folder)."""

    def __init__(self, workers, models, settings, cpus=None, gpus=0, scratch=None, log=None,
                 placement_timeout=PLACEMENT_TIMEOUT_S):
        if workers < 1:
            raise ValueError(f"--workers: expected a positive integer, got {workers}")
        self.workers, self.models, self.settings = workers, models, settings
        self.cpus = settings.threads if cpus is None else cpus
        self.gpus, self.scratch, self.placement_timeout = gpus, scratch, placement_timeout
        self.log = log or (lambda message: None)

    def run(self, jobs):
        ray = import_ray()
        actor_class = ray.remote(PoseActor).options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=RESTARTS,
                                                    max_task_retries=RESTARTS)
        payload = ray.put(self.models.payload())
        actors = [actor_class.remote([payload], self.settings, self.scratch) for _ in range(min(self.workers, len(jobs)))]
        ready = []
        try:
            ready = self._ready(ray, actors)
            yield from self._dispatch(ray, ready, deque(jobs))
        finally:
            if ready:
                ray.wait([actor.close.remote() for actor in ready], num_returns=len(ready), timeout=10)
            for actor in actors:
                ray.kill(actor, no_restart=True)

    def _ready(self, ray, actors):
        """The actors that opened the models; each one that could not is reported once."""
        checks = {actor.check.remote(): actor for actor in actors}
        done, waiting = ray.wait(list(checks), num_returns=len(checks), timeout=self.placement_timeout)
        if waiting:
            self.log(f"{len(waiting)} of {len(actors)} workers were not placed within {self.placement_timeout} s "
                     f"(each needs {self.cpus} CPUs and {self.gpus} GPUs on one node)")
        ready, problems = [], []
        for ref in done:
            try:
                problem = ray.get(ref)
            except ray.exceptions.RayError as error:  # its process died while opening the models
                problem = str(error).strip().splitlines()[0]
            if problem is None:
                ready.append(checks[ref])
            else:
                problems.append(problem)
                self.log(f"worker {problem}; it takes no videos")
        if not ready:
            from livepose.batch.local import WorkersUnusable

            raise WorkersUnusable(f"no Ray worker could start: {problems[0] if problems else 'none was placed'}")
        return ready

    def _dispatch(self, ray, actors, queue):
        running = {}
        for actor in actors:
            if queue:
                job = queue.popleft()
                running[actor.process.remote(job)] = (actor, job)
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:  # the worker died more often than it may restart: drop it
                result, actor = {"key": job["key"], "status": "failed",
                                 "reason": f"worker lost: {str(error).strip().splitlines()[0]}"}, None
            yield result
            if queue and actor is not None:
                job = queue.popleft()
                running[actor.process.remote(job)] = (actor, job)
        for job in queue:
            yield {"key": job["key"], "status": "failed", "reason": "no Ray worker left to process it"}
