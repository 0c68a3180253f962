"""The per-run record `DIR/batch.jsonl`: what each video became, and what a re-run may skip.

One JSON object per line, appended and fsynced by the driver alone:
- `{"event": "run", "started", "livepose", "models": [{"role", "name", "sha256"}], "settings", "host"}`
  at the start of every run;
- `{"event": "video", "video": KEY, "input", "status": "done"|"failed"|"skipped", ...}` per video:
  done with frames, persons, seconds and outputs; failed with its one-line reason; skipped (done
  by an earlier run).
A video is skipped when its latest done record has the same input identity (size + mtime, or an
http(s) URL's ETag / Last-Modified), the same fingerprint (model SHA-256s and the settings that
change results) and every requested output still exists. A line cut short by a kill is ignored.
"""
import json
import os
import socket
import time
import urllib.request
from importlib import metadata
from pathlib import Path

STATUS_FILE = "batch.jsonl"
URL_TIMEOUT_S = 10


def livepose_version():
    try:
        return metadata.version("livepose")
    except metadata.PackageNotFoundError:
        return "unknown"


def input_identity(item):
    """What says a BatchInput is unchanged: {"size", "mtime_ns"} of a file, the validators of a URL
    (None where the server gives none: such a video is always redone)."""
    if not item.is_url:
        stat = os.stat(item.source)
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        request = urllib.request.Request(item.source, method="HEAD")
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            headers = response.headers
    except OSError:
        return None  # unreachable now: the worker reports why when it tries
    found = {name: headers.get(header) for name, header in
             (("etag", "ETag"), ("last_modified", "Last-Modified"), ("size", "Content-Length"))}
    return found if found["etag"] or found["last_modified"] else None


class StatusLog:
    """Appends records to DIR/batch.jsonl and reads back the latest done record of each video."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / STATUS_FILE

    def done_records(self):
        """{video key: its latest record} for videos whose latest done-or-failed record is done."""
        latest = {}
        if not self.path.is_file():
            return latest
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a killed run
                if record.get("event") == "video" and record.get("status") in ("done", "failed"):
                    latest[record["video"]] = record
        return {key: record for key, record in latest.items() if record["status"] == "done"}

    def start_run(self, models, settings):
        self._append({"event": "run", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
                      "livepose": livepose_version(), "models": models, "settings": settings})

    def video(self, key, source, status, **fields):
        self._append({"event": "video", "video": key, "input": source, "status": status, **fields})

    def _append(self, record):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def can_skip(record, identity, fingerprint, outputs):
    """Whether a done `record` still stands for this input, these models/settings and these
    output files (a dict kind -> final path)."""
    return (record is not None and identity is not None and record.get("identity") == identity
            and record.get("fingerprint") == fingerprint
            and set(outputs) <= set(record.get("outputs", ()))
            and all(Path(path).is_file() for path in outputs.values()))
