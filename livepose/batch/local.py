"""The embedded executor: N worker processes on this machine, each opening the models once and
taking videos from one queue. Workers write into the output folder's scratch area (same file
system, so the driver's commit is a rename)."""
import multiprocessing
import queue
import signal

from livepose.batch.worker import close_estimator, open_estimator, process_job

POLL_S = 0.5


class WorkersUnusable(ValueError):
    """No worker could open the models; the message says why."""


class LocalExecutor:
    """Runs jobs on `workers` local processes; `run(jobs)` yields result dicts as videos finish."""

    def __init__(self, workers, models, settings, scratch, log=None):
        if workers < 1:
            raise ValueError(f"--workers: expected a positive integer, got {workers}")
        self.workers, self.models, self.settings, self.scratch = workers, models, settings, scratch
        self.log = log or (lambda message: None)

    def run(self, jobs):
        context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        tasks, results = context.Queue(), context.Queue()
        for job in jobs:
            tasks.put(job)
        count = min(self.workers, len(jobs))
        for _ in range(count):
            tasks.put(None)
        processes = [context.Process(target=_worker_main, daemon=True,
                                     args=(tasks, results, self.models, self.settings, str(self.scratch)))
                     for _ in range(count)]
        for process in processes:
            process.start()
        try:
            yield from _collect(results, processes, jobs, self.log)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join()


def _collect(results, processes, jobs, log):
    """Results as they come; a worker that dies fails the video it held, and when every worker
    is gone the videos left fail too."""
    pending = {job["key"] for job in jobs}
    holding, unusable = {}, []
    while pending:
        try:
            message = results.get(timeout=POLL_S)
        except queue.Empty:
            yield from _casualties(processes, holding, pending)
            if pending and not any(p.is_alive() for p in processes):
                if unusable and len(unusable) == len(processes):
                    raise WorkersUnusable(f"no worker could open the models: {unusable[0]}")
                for key in sorted(pending):
                    yield {"key": key, "status": "failed", "reason": "no worker left to process it"}
                pending.clear()
            continue
        kind = message.pop("message")
        if kind == "unusable":
            unusable.append(message["reason"])
            log(f"worker {message['pid']} takes no videos: {message['reason']}")
        elif kind == "started":
            holding[message["pid"]] = message["key"]
        else:
            holding.pop(message.pop("pid"), None)
            pending.discard(message["key"])
            yield message


def _casualties(processes, holding, pending):
    for process in processes:
        key = holding.get(process.pid)
        if key is not None and not process.is_alive():
            del holding[process.pid]
            pending.discard(key)
            yield {"key": key, "status": "failed", "reason": f"worker process died (exit code {process.exitcode})"}


def _worker_main(tasks, results, models, settings, scratch):
    import os

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers
    pid = os.getpid()
    try:
        estimator = open_estimator(models, settings)
    except Exception as error:
        results.put({"message": "unusable", "pid": pid, "reason": str(error).strip().splitlines()[0]})
        return
    try:
        for job in iter(tasks.get, None):
            results.put({"message": "started", "pid": pid, "key": job["key"]})
            results.put({"message": "result", "pid": pid, **process_job(job, estimator, settings, scratch)})
    finally:
        close_estimator(estimator)
