"""Where the models come from: command-line flags, then engines/, then the user cache; and the
first-run download of published weights (`livepose fetch-models`).

Published weights: the official YOLOX-Nano ONNX (the default person detector) and the MMPose
SimpleBaseline ResNet-50 checkpoints, which `livepose-train` (the `train` extra, PaddlePaddle) turns
into a livepose ONNX model; livepose itself never imports paddle, so that runs as a subprocess.
Every file is checked against its SHA-256 (the whole digest, or the 8-hex prefix MMPose puts in its
file names) before it is used.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from livepose.core.metadata import METADATA_KEY, read_onnx_metadata_props
from livepose.files import check_readable_file
from livepose.runtime.open_model import INT8_SUFFIX

CACHE_ENV = "LIVEPOSE_CACHE"              # the user cache folder, instead of ~/.cache/livepose
ENGINES_ENV = "LIVEPOSE_ENGINES"          # the engines folder, instead of <checkout>/engines and ./engines
MIRROR_ENV = "LIVEPOSE_DOWNLOAD_MIRROR"   # base URL serving the published files by name (air-gapped sites)
REPO_ROOT = Path(__file__).resolve().parents[1]


class ModelNotFound(ValueError):
    """No model was given or found, and none could be fetched; the message says how to get one."""


@dataclass(frozen=True)
class PublishedFile:
    """A file published by its authors: where to get it and how to recognise it."""

    name: str                  # file name, in the cache and in a --from folder
    url: str
    description: str
    sha256: str = None         # full digest where known
    sha256_prefix: str = None  # MMPose publishes only the first 8 hex digits, in the file name
    size: int = None           # bytes, where known

    def download_url(self):
        mirror = os.environ.get(MIRROR_ENV)
        return f"{mirror.rstrip('/')}/{self.name}" if mirror else self.url


DETECTOR = PublishedFile(
    name="yolox_nano.onnx",
    url="https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
    description="YOLOX-Nano person detector (Megvii-BaseDetection/YOLOX release 0.1.1rc0, Apache-2.0)",
    sha256="c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d",
    size=3_659_407,
)
# pose input size (H x W) -> the MMPose SimpleBaseline ResNet-50 COCO checkpoint and our config
POSE_CHECKPOINTS = {
    "256x192": PublishedFile(
        name="res50_coco_256x192-ec54d7f3_20200709.pth",
        url="https://download.openmmlab.com/mmpose/top_down/resnet/res50_coco_256x192-ec54d7f3_20200709.pth",
        description="MMPose SimpleBaseline ResNet-50 COCO 256x192 (AP 0.718 on val2017, Apache-2.0)",
        sha256_prefix="ec54d7f3",
    ),
    "384x288": PublishedFile(
        name="res50_coco_384x288-e6f795e9_20200709.pth",
        url="https://download.openmmlab.com/mmpose/top_down/resnet/res50_coco_384x288-e6f795e9_20200709.pth",
        description="MMPose SimpleBaseline ResNet-50 COCO 384x288 (AP 0.731 on val2017, Apache-2.0)",
        sha256_prefix="e6f795e9",
    ),
}
POSE_SIZES = tuple(POSE_CHECKPOINTS)
DEFAULT_POSE_SIZE = "256x192"  # runs in real time on a laptop CPU; 384x288 is more precise and ~2x slower


def pose_config(pose_size):
    return f"r50-{pose_size}"


def pose_model_name(pose_size):
    """File name of the pose model fetch-models makes, in the cache or engines/."""
    return f"pose_{pose_config(pose_size)}_mmpose.onnx"


def cache_dir():
    """The user cache: $LIVEPOSE_CACHE, else $XDG_CACHE_HOME/livepose, else ~/.cache/livepose."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "livepose"


def engines_dirs():
    """Existing engines/ folders, searched in order: $LIVEPOSE_ENGINES, else the checkout's and ./engines."""
    if os.environ.get(ENGINES_ENV):
        candidates = [Path(os.environ[ENGINES_ENV]).expanduser()]
    else:
        candidates = [REPO_ROOT / "engines", Path.cwd() / "engines"]
    found = []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in [f.resolve() for f in found]:
            found.append(folder)
    return found


def _is_pose_model(path):
    """True for an ONNX file carrying livepose pose metadata (detectors carry none)."""
    try:
        return METADATA_KEY in read_onnx_metadata_props(path)
    except (OSError, ValueError):
        return False


def find_pose_model(folders, pose_size=None):
    """The pose model in the first folder that has one: fetch-models' file for `pose_size` (or
    either size) first, then any ONNX with livepose metadata, by name. None if there is none."""
    sizes = [pose_size] if pose_size else list(POSE_SIZES)
    for folder in folders:
        for size in sizes:
            path = folder / pose_model_name(size)
            if path.is_file():
                return path
        # an f32 model before its INT8 sibling: open_model swaps in the sibling itself, --no-int8 keeps f32
        for path in sorted(folder.glob("*.onnx"), key=lambda p: (p.stem.endswith(INT8_SUFFIX), p.name)):
            if not path.name.startswith("yolo") and _is_pose_model(path):
                return path
    return None


def find_detector(folders):
    """The person detector in the first folder that has one: yolox_nano.onnx, else yolo*.onnx by name."""
    for folder in folders:
        path = folder / DETECTOR.name
        if path.is_file():
            return path
        others = sorted(p for p in folder.glob("yolo*.onnx") if not _is_pose_model(p))
        if others:
            return others[0]
    return None


@dataclass(frozen=True)
class ResolvedModels:
    """The models a run uses and where each was found ("flag", "engines", "cache" or "fetched")."""

    pose_model: Path
    detector: Path
    pose_origin: str
    detector_origin: str


def resolve_models(pose_model=None, detector=None, pose_size=None, fetch=True, progress=True):
    """Pick the pose model and detector: flags, then engines/, then the user cache; when either is
    still missing and `fetch` is True, download and convert the published ones (fetch_models).
    """
    found = {}
    for kind, flag, finder in (("pose model", pose_model, lambda d: find_pose_model(d, pose_size)),
                               ("detector", detector, find_detector)):
        if flag is not None:
            check_readable_file(flag, kind)
            found[kind] = (Path(flag), "flag")
            continue
        for origin, folders in (("engines", engines_dirs()), ("cache", [cache_dir()])):
            path = finder([f for f in folders if f.is_dir()])
            if path is not None:
                found[kind] = (path, origin)
                break
    missing = [kind for kind in ("pose model", "detector") if kind not in found]
    if missing:
        if not fetch:
            raise ModelNotFound(
                f"no {' and no '.join(missing)} found (searched the flags, {_searched()}); "
                "run `livepose fetch-models` or pass --pose-model / --detector"
            )
        print(f"livepose: no {' and no '.join(missing)} found; fetching the published models into {cache_dir()}",
              file=sys.stderr)
        fetched = fetch_models(pose_size or DEFAULT_POSE_SIZE, progress=progress,
                               want_pose="pose model" in missing, want_detector="detector" in missing)
        for kind, path in fetched.items():
            found[kind] = (path, "fetched")
    (pose_path, pose_origin), (detector_path, detector_origin) = found["pose model"], found["detector"]
    return ResolvedModels(pose_path, detector_path, pose_origin, detector_origin)


def _searched():
    folders = [str(f) for f in engines_dirs()] or ["engines/ (absent)"]
    return ", ".join(folders + [str(cache_dir())])


class FetchError(ValueError):
    """Published weights could not be fetched, verified or converted; the message says what to do."""


def _verify(path, published):
    """Raise FetchError naming the file when its SHA-256 is not the published one."""
    from livepose.runtime.download import ChecksumError, verify_file

    try:
        verify_file(path, sha256=published.sha256, sha256_prefix=published.sha256_prefix)
    except ChecksumError as error:
        raise FetchError(f"refusing {published.name} ({published.description}): {error}") from None


def obtain_file(published, folder, source_dir=None, progress=True):
    """The verified file in `folder`: already there, copied from `source_dir`, or downloaded.

    Returns (path, None), or (None, why) when the file is not in `source_dir` or the download failed
    (offline), so that every missing file can be named in one message. A checksum mismatch raises
    FetchError at once.
    """
    from livepose.runtime.download import ChecksumError, DownloadError, fetch

    target = folder / published.name
    if target.is_file():
        _verify(target, published)
        return target, None
    if source_dir is not None:
        local = Path(source_dir) / published.name
        if not local.is_file():
            return None, f"--from {source_dir}: no {published.name} there"
        _verify(local, published)
        temporary = target.with_name(f".{target.name}.partial-{os.getpid()}")
        shutil.copyfile(local, temporary)
        os.replace(temporary, target)
        return target, None
    try:
        return fetch(published.download_url(), target, sha256=published.sha256,
                     sha256_prefix=published.sha256_prefix, progress=progress), None
    except ChecksumError as error:
        raise FetchError(f"refusing {published.name} ({published.description}): {error}") from None
    except DownloadError as error:
        return None, str(error).split(";")[0]  # the reason; the message below says where the file goes


def fetch_models(pose_size=DEFAULT_POSE_SIZE, source_dir=None, progress=True, want_pose=True, want_detector=True):
    """Download (or copy from `source_dir`), verify and convert the published models into the cache.

    Returns {"pose model": Path, "detector": Path} for those asked for. Raises FetchError with one
    message naming every URL that could not be fetched and where to put the file instead.
    """
    if pose_size not in POSE_CHECKPOINTS:
        raise ValueError(f"pose size: expected one of {', '.join(POSE_SIZES)}, got {pose_size!r}")
    if source_dir is not None and not Path(source_dir).is_dir():
        raise FetchError(f"--from {source_dir}: no such folder")
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FetchError(f"model cache {folder}: cannot be created ({error.strerror}); set {CACHE_ENV} to another folder") from None
    pose_onnx = folder / pose_model_name(pose_size)
    wanted = []
    if want_detector:
        wanted.append(DETECTOR)
    if want_pose and not pose_onnx.is_file():
        wanted.append(POSE_CHECKPOINTS[pose_size])
    obtained, failures = {}, []
    for published in wanted:
        path, error = obtain_file(published, folder, source_dir, progress)
        if path is None:
            failures.append((published, error))
        obtained[published.name] = path
    if failures:
        lines = [f"cannot get {len(failures)} model file(s) ({failures[0][1]}). Download each URL on a machine "
                 f"that is online and put the file at the path shown (or put them all in one folder and run "
                 f"`livepose fetch-models --from FOLDER`):"]
        for published, _ in failures:
            lines.append(f"  {published.download_url()}  ->  {folder / published.name}   ({published.description})")
        raise FetchError("\n".join(lines))
    result = {}
    if want_detector:
        result["detector"] = obtained[DETECTOR.name]
    if want_pose:
        if not pose_onnx.is_file():
            convert_checkpoint(obtained[POSE_CHECKPOINTS[pose_size].name], pose_config(pose_size), pose_onnx)
        result["pose model"] = pose_onnx
    return result


def train_command():
    """The argv prefix that runs livepose-train in this Python, or None when it is not installed."""
    if importlib.util.find_spec("paddle") is None:
        return None
    if importlib.util.find_spec("livepose_train") is not None:
        return [sys.executable, "-m", "livepose_train"]
    if (REPO_ROOT / "train" / "__main__.py").is_file():  # a source checkout without `pip install -e`
        return [sys.executable, "-m", "train"]
    return None


def convert_checkpoint(checkpoint, config, out):
    """MMPose checkpoint -> livepose checkpoint -> ONNX at `out`, by running livepose-train."""
    command = train_command()
    if command is None:
        raise FetchError(
            f"converting {checkpoint} into a pose model needs the `train` extra (PaddlePaddle): "
            "pip install -e '.[train]' (or pip install 'livepose[train]'), then run `livepose fetch-models` again; "
            "or pass an exported model with --pose-model"
        )
    out = Path(out)
    converted = out.with_name(f"{out.stem}.safetensors")
    steps = [
        command + ["import", "mmpose", str(checkpoint), "--config", config, "--out", str(converted)],
        command + ["export", "--config", config, "--checkpoint", str(converted), "--out", str(out)],
    ]
    for step in steps:
        print(f"livepose: running {' '.join(step[1:] if step[0] == sys.executable else step)}", file=sys.stderr)
        result = subprocess.run(step, cwd=REPO_ROOT if command[-1] == "train" else None,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-10:])
            raise FetchError(f"converting {checkpoint} failed ({' '.join(step[2:4])} exited {result.returncode}):\n{tail}")
    return out
