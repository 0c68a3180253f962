"""Which videos a batch processes and what each output is called.

Inputs are video files, folders (searched recursively by video extension), glob patterns, or
manifests (`.txt`: one path or URL per line, `#` comments; `.csv`: a `path` column). Every video
gets a key, its path relative to the root it was found under, without the extension; its outputs
are `DIR/<kind>/<key>.<ext>`. Roots:
- a file named on the command line: its folder (key = its file name);
- a folder: the folder itself; a glob: the folder before the first wildcard;
- a manifest: the manifest's folder for relative entries and for absolute entries below it; an
  absolute entry elsewhere keeps its whole path without the leading `/` (or drive); a URL gives
  host/path.
Two inputs with the same key (a.mp4 and a.avi, or the same name under two roots) are refused by
name rather than overwriting each other.
"""
import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from livepose.files import MediaError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
MANIFEST_EXTENSIONS = (".txt", ".csv")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://", "/dev/video")
URL_PREFIXES = ("http://", "https://")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class BatchInput:
    """One video of a batch: `source` (a local path or an http(s) URL, as a string) and `key`, the
    relative name its outputs get (POSIX separators, no extension)."""

    source: str
    key: str

    def __post_init__(self):
        if not self.key or self.key.startswith("/") or ".." in PurePosixPath(self.key).parts:
            raise ValueError(f"key {self.key!r}: expected a relative path inside the output folder")

    @property
    def is_url(self):
        return self.source.lower().startswith(URL_PREFIXES)


def resolve_inputs(specs, out_dir=None):
    """BatchInputs of the command-line INPUTS in order (duplicates of one source dropped); raises
    MediaError naming what is wrong: a live source, nothing matched, two inputs with one key, or
    `out_dir` inside an input folder."""
    found, unmatched = [], []
    for spec in map(str, specs):
        items = _expand(spec, out_dir)
        if not items:
            unmatched.append(spec)
        found.extend(items)
    if unmatched:
        raise MediaError(f"no videos matched {', '.join(unmatched)} (expected video files {', '.join(VIDEO_EXTENSIONS)}, "
                         "folders of them, glob patterns, or a .txt/.csv manifest)")
    return _unique(found)


def _expand(spec, out_dir):
    lowered = spec.lower()
    if lowered.startswith(LIVE_PREFIXES) or spec.isdigit():
        raise MediaError(f"input {spec}: a live source (camera or stream); batch processes videos that end, "
                         "use `livepose webcam --camera` for live sources")
    if lowered.startswith(URL_PREFIXES):
        return [BatchInput(spec, _url_key(spec))]
    path = Path(spec)
    if path.is_dir():
        _refuse_out_inside(path, out_dir)
        return [BatchInput(str(video), _key(video, path)) for video in _videos_under(path, out_dir)]
    if path.is_file() and path.suffix.lower() in MANIFEST_EXTENSIONS:
        return _manifest(path, out_dir)
    if path.is_file() or (not path.exists() and not any(c in spec for c in GLOB_CHARACTERS)):
        if not path.exists():
            raise MediaError(f"input {spec}: no such file or folder")
        return [BatchInput(str(path), _key(path, path.parent))]
    root = _glob_root(spec)
    matches = sorted(Path(match) for match in glob.glob(spec, recursive=True))
    return [BatchInput(str(match), _key(match, root)) for match in matches
            if match.is_file() and match.suffix.lower() in VIDEO_EXTENSIONS and not _inside(match, out_dir)]


def _videos_under(folder, out_dir):
    videos = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        videos.extend(Path(parent) / name for name in sorted(files)
                      if Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith("."))
    return [video for video in videos if not _inside(video, out_dir)]


def _manifest(path, out_dir):
    """Entries of a .txt (one per line) or .csv (a `path` column) manifest."""
    with open(path, newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            if "path" not in (reader.fieldnames or []):
                raise MediaError(f"manifest {path}: expected a `path` column, found {reader.fieldnames}")
            entries = [row["path"].strip() for row in reader]
        else:
            entries = [line.strip() for line in handle]
    entries = [entry for entry in entries if entry and not entry.startswith("#")]
    if not entries:
        raise MediaError(f"manifest {path}: lists no videos")
    root, items = path.parent, []
    for entry in entries:
        if entry.lower().startswith(LIVE_PREFIXES):
            raise MediaError(f"manifest {path}: {entry} is a live source; batch processes videos that end")
        if entry.lower().startswith(URL_PREFIXES):
            items.append(BatchInput(entry, _url_key(entry)))
            continue
        video = Path(entry) if Path(entry).is_absolute() else root / entry
        if not video.is_file():
            raise MediaError(f"manifest {path}: {entry}: no such file")
        items.append(BatchInput(str(video), _key(video, root) if _inside(video, root) else _absolute_key(video)))
    return items


def _unique(items):
    by_key, unique, seen = {}, [], set()
    for item in items:
        identity = item.source if item.is_url else str(Path(item.source).resolve())
        if identity in seen:
            continue
        seen.add(identity)
        if item.key in by_key:
            raise MediaError(f"inputs {by_key[item.key]} and {item.source}: both would be written as {item.key}.*; "
                             "rename one or give them separate runs")
        by_key[item.key] = item.source
        unique.append(item)
    return unique


def _refuse_out_inside(folder, out_dir):
    if out_dir is not None and _inside(Path(out_dir), folder):
        raise MediaError(f"--out {out_dir}: is inside the input folder {folder}; choose an output folder outside it")


def _inside(path, folder):
    if folder is None:
        return False
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
        return True
    except ValueError:
        return False


def _key(path, root):
    relative = Path(path).resolve().relative_to(Path(root).resolve())
    return relative.with_suffix("").as_posix()


def _absolute_key(path):
    resolved = Path(path).resolve()
    return Path(*resolved.parts[1:]).with_suffix("").as_posix()


def _url_key(url):
    parts = urlsplit(url)
    path = PurePosixPath(parts.path.lstrip("/") or "video")
    clean = [part for part in path.with_suffix("").parts if part not in ("", ".", "..")]
    return "/".join([parts.hostname or "url", *clean])


def _glob_root(pattern):
    """The folder before the first wildcard of a glob pattern."""
    parts = []
    for part in Path(pattern).parts:
        if any(c in part for c in GLOB_CHARACTERS):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")
