"""`python -m train fit`: train a pose model on COCO-format keypoints (the tutorial's recipe).

Adam with the tutorial's piecewise decay (x0.1 at 60 % and 85 % of the epochs, boundaries counted in
steps), the keypoint-weighted heatmap MSE, AMP on GPU, validation AP every N epochs with the best
weights kept, checkpoints every N steps and on exit (Ctrl-C included), exact resume.

Files in --out:
  last.safetensors   model weights + CheckpointMeta (config, colour order, epoch, step); no pickle
  last.resume.pd     optimizer, scheduler, AMP scaler, epoch, step, sampler position, RNG: written with
                     paddle.save, which is pickle. It is a file you made yourself; never resume from one
                     you did not (loading pickle can run code).
  best.safetensors   the weights with the best validation AP so far (with --val-ann)
  logs/train.csv     step, epoch, loss, lr, samples/s every --log-every steps
  logs/heatmaps/     the summed output heatmap of the batch's first crop per log step (PNG), or the
                     same in logs/visualdl when VisualDL is installed (the tutorial's callback)

Data parallel (`paddle.distributed.launch` starts one process per rank):
  8 GPUs:        python -m paddle.distributed.launch --gpus 0,1,2,3,4,5,6,7 train/__main__.py fit ...
  2 CPU procs:   OMP_NUM_THREADS=1 python -m paddle.distributed.launch --nproc_per_node 2 train/__main__.py fit ...
                 (gloo; the same gradient all-reduce, sharding and resume as on GPUs)
--batch-size is GLOBAL (samples per optimizer step), split evenly over the ranks, so the learning rate
and schedule mean the same on any number of devices: a world-size change never changes the rate (scale
--lr yourself only when you change --batch-size). Ranks take disjoint shards of each global batch; only
rank 0 writes checkpoints, logs and curves, and validates while the others wait at a barrier. Every
rank resumes from the same --out: on several nodes it must be a shared folder. When a rank fails,
`launch` stops the job and names the failed rank and its log (--log_dir, workerlog.N); gloo
collectives have no timeout (PADDLE_PG_TIMEOUT is not applied on CPU), so a rank that finishes no step
for --rank-timeout seconds (RankWatchdog) ends itself, naming its rank, and `launch` stops the rest.
BatchNorm statistics are per rank (SyncBatchNorm is GPU-only in Paddle); --freeze-bn keeps them fixed,
which makes N ranks equal one process to float tolerance (tests/train/test_fit_distributed.py).
"""
import contextlib
import csv
import io
import numbers
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import paddle

from livepose.core.geometry import TARGET_ENCODINGS
from livepose.files import sha256_of, write_atomic

from .checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    load_model_state,
    model_state,
    save_checkpoint,
)
from .dataset import (
    COLOR_ORDER,
    Augmentation,
    COCOPose,
    DatasetError,
    EpochBatchSampler,
    coco_paths,
    dump_debug,
    load_coco_persons,
)
from .loss import heatmap_loss
from .model import CONFIGS, build_model, get_config

RESUME_VERSION = 1
WEIGHTS_FILE = "last.safetensors"
RESUME_FILE = "last.resume.pd"
BEST_FILE = "best.safetensors"
# torchvision/Paddle ResNet child names -> index in PoseNet.backbone (conv1 bn1 relu maxpool layer1..4)
_BACKBONE_CHILDREN = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}


class FitError(ValueError):
    """A user error in fit's inputs (resume file, backbone weights, settings)."""


@dataclass(frozen=True)
class FitSettings:
    """How to train; `from_config` takes the config's defaults (the tutorial's)."""

    epochs: int
    batch_size: int                 # global: samples per optimizer step, split evenly over the ranks
    lr: float
    lr_steps: tuple = (0.6, 0.85)   # x0.1 at these fractions of all steps
    workers: int = 2
    seed: int = 0
    augment: bool = True
    save_every_steps: int = 0       # 0: at the end of each epoch instead; always on exit
    val_every_epochs: int = 1
    log_every: int = 50             # 0: no logs
    max_steps: int = 0              # 0: run all epochs
    progress: bool = True
    freeze_batchnorm: bool = False  # BatchNorm layers in eval mode: running statistics used, never updated
    rank_timeout_s: float = 3600.0  # several ranks: a rank that finishes no step (or validation) for this long ends

    def __post_init__(self):
        # the smallest value each accepts; 0 turns the optional ones off (see the field comments)
        if isinstance(self.rank_timeout_s, bool) or not isinstance(self.rank_timeout_s, numbers.Real) \
                or self.rank_timeout_s < 0:
            raise FitError(f"rank_timeout_s (--rank-timeout): expected seconds >= 0, got {self.rank_timeout_s!r}")
        minimums = {"epochs": 1, "batch_size": 1, "val_every_epochs": 1, "workers": 0, "save_every_steps": 0,
                    "log_every": 0, "max_steps": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
                expected = "a positive" if minimum else "a non-negative"
                raise FitError(f"{name} (--{name.replace('_', '-')}): expected {expected} integer, got {value!r}")

    @classmethod
    def from_config(cls, config, **overrides):
        base = cls(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, lr_steps=config.lr_steps)
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class FitResult:
    out_dir: str
    step: int
    epoch: int
    interrupted: bool
    last_loss: float
    best_ap: float = -1.0
    validation: list = field(default_factory=list)   # [(epoch, stats dict)]


# ---------------------------------------------------------------- weights in and out

def load_backbone_weights(model, path, sha256):
    """ImageNet ResNet weights (Paddle's resnet*.pdparams or a .safetensors with the same names) -> model.backbone.

    The SHA-256 is checked before anything is read: .pdparams files are pickle, so only a file whose
    checksum you vouch for is opened.
    """
    if not os.path.isfile(path):
        raise FitError(f"--backbone-weights {path}: no such file")
    if not sha256:
        raise FitError(f"--backbone-weights {path}: give its --backbone-sha256 (the file is checked before it is read)")
    actual = sha256_of(path)
    if actual != sha256.strip().lower():
        raise FitError(f"--backbone-weights {path}: SHA-256 is {actual}, --backbone-sha256 says {sha256}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        source = load_file(path)
    else:
        source = {k: np.asarray(v) for k, v in paddle.load(path, return_numpy=True).items()}
    state = {}
    for name, value in source.items():
        head, _, rest = name.removeprefix("backbone.").partition(".")
        if head in _BACKBONE_CHILDREN:
            state[f"{_BACKBONE_CHILDREN[head]}.{rest}"] = value
    load_model_state(model.backbone, state, source=f"--backbone-weights {path}")


def _optimizer_state(optimizer, model):
    """Optimizer accumulators keyed by the model's structural names ('upLayers.0.weight|_moment1_0'),
    not by Paddle's process-global parameter names, so another process or model instance can load them."""
    structural = {p.name: key for key, p in model.named_parameters()}
    out = {}
    for key, value in optimizer.state_dict().items():
        if key == "LR_Scheduler":
            continue
        if key == "master_weights":
            out[key] = {structural[name]: v.numpy() for name, v in value.items()}
            continue
        cut = next((i for i, ch in enumerate(key) if ch == "_" and key[:i] in structural), None)
        if cut is None:
            raise FitError(f"optimizer state '{key}' belongs to no model parameter")
        out[f"{structural[key[:cut]]}|{key[cut:]}"] = value.numpy()
    return out


def _restore_optimizer(optimizer, scheduler, model, saved, source):
    runtime = {key: p.name for key, p in model.named_parameters()}
    trainable = {key for key, p in model.named_parameters() if not p.stop_gradient}
    saved = dict(saved)
    masters = saved.pop("master_weights", None)
    covered = {key.split("|")[0] for key in saved}
    if not covered:  # saved before the first step: Adam creates its moments lazily
        return
    if covered != trainable:
        raise FitError(f"{source}: optimizer state does not match the model's parameters "
                       f"(missing {sorted(trainable - covered)[:3]}, unexpected {sorted(covered - trainable)[:3]})")
    state = {runtime[key.split("|")[0]] + key.split("|")[1]: paddle.to_tensor(v) for key, v in saved.items()}
    if masters is not None:
        state["master_weights"] = {runtime[k]: paddle.to_tensor(v) for k, v in masters.items()}
    state["LR_Scheduler"] = scheduler.state_dict()
    optimizer.set_state_dict(state)


# ---------------------------------------------------------------- logging

class _Logger:
    """CSV of scalars (always) and the summed output heatmap (VisualDL when installed, else PNG)."""

    def __init__(self, out_dir, enabled):
        self.enabled = enabled
        if not enabled:
            return
        self.dir = os.path.join(out_dir, "logs")
        os.makedirs(self.dir, exist_ok=True)
        path = os.path.join(self.dir, "train.csv")
        new = not os.path.exists(path)
        self.csv_file = open(path, "a", newline="")
        self.csv = csv.writer(self.csv_file)
        if new:
            self.csv.writerow(["step", "epoch", "loss", "lr", "samples_per_s"])
        try:
            from visualdl import LogWriter

            self.visualdl = LogWriter(logdir=os.path.join(self.dir, "visualdl"))
        except ImportError:
            self.visualdl = None
            os.makedirs(os.path.join(self.dir, "heatmaps"), exist_ok=True)

    def log(self, step, epoch, loss, lr, samples_per_s, heatmaps):
        """heatmaps: (K, h, w) float output for one crop."""
        if not self.enabled:
            return
        self.csv.writerow([step, epoch, f"{loss:.8g}", f"{lr:.6g}", f"{samples_per_s:.3f}"])
        self.csv_file.flush()
        summed = heatmaps.sum(axis=0)
        span = float(summed.max() - summed.min())
        grey = np.uint8((summed - summed.min()) / (span if span > 0 else 1.0) * 255)
        if self.visualdl is not None:
            self.visualdl.add_scalar(tag="loss", step=step, value=loss)
            self.visualdl.add_scalar(tag="lr", step=step, value=lr)
            self.visualdl.add_scalar(tag="samples_per_s", step=step, value=samples_per_s)
            self.visualdl.add_image(tag="output heatmaps", step=step, img=grey[:, :, None])
        else:
            image = cv2.applyColorMap(cv2.resize(grey, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST),
                                      cv2.COLORMAP_JET)
            cv2.imwrite(os.path.join(self.dir, "heatmaps", f"step_{step:08d}.png"), image)

    def close(self):
        if self.enabled:
            self.csv_file.close()
            if self.visualdl is not None:
                self.visualdl.close()


class RankWatchdog:
    """Ends this rank's process when it finishes no step for `timeout_s` seconds.

    gloo collectives wait without a time limit (PADDLE_PG_TIMEOUT is not applied to them on CPU,
    measured with Paddle 3.3), so a rank whose peer hangs would wait in the all-reduce forever. Exiting
    lets paddle.distributed.launch stop the job, naming this rank. The timeout must exceed the longest
    step and a validation (the other ranks wait at a barrier meanwhile).
    """

    def __init__(self, timeout_s, rank, on_timeout=None):
        self.timeout_s, self.rank = float(timeout_s), rank
        self.on_timeout = on_timeout or _exit_for_timeout
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="rank-watchdog", daemon=True)

    def __enter__(self):
        self.beat()
        self._thread.start()
        return self

    def beat(self):
        """This rank made progress."""
        self._last = time.monotonic()

    def _watch(self):
        while not self._done.wait(min(self.timeout_s / 4, 10.0)):
            idle = time.monotonic() - self._last
            if idle > self.timeout_s:
                self.on_timeout(f"livepose-train fit: error: rank {self.rank} finished no step for {idle:.0f} s "
                                f"(--rank-timeout {self.timeout_s:g}): another rank hangs or died; stopping")
                return

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def _exit_for_timeout(message):
    print(message, file=sys.stderr, flush=True)
    os._exit(3)  # the main thread may sit inside a collective that never returns


class _StopFlag:
    """The first Ctrl-C asks the loop to stop after the current step; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------- the loop

def _device():
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}")
        return True
    paddle.set_device("cpu")
    return False


def _start_ranks(batch_size):
    """-> (world size, rank), joining the other ranks when there are several (gloo on CPU, NCCL on GPU)."""
    world_size, rank = paddle.distributed.get_world_size(), paddle.distributed.get_rank()
    if batch_size % world_size:
        raise FitError(f"batch_size (--batch-size): the global batch {batch_size} does not split evenly over "
                       f"{world_size} ranks")
    if world_size > 1:
        paddle.distributed.init_parallel_env()
    return world_size, rank


def _validate(model, config, val, target_encoding):
    """COCO keypoint AP/AR on (ann file, image dir) with ground-truth boxes, BatchNorm in eval mode."""
    from .evaluate import evaluate_model, fit_model_meta, paddle_predict_fn

    model.eval()
    try:
        return evaluate_model(paddle_predict_fn(model), config, val[0], val[1],
                              model_meta=fit_model_meta(config, COLOR_ORDER, target_encoding))
    finally:
        model.train()


def train(config, dataset, out_dir, settings, resume=None, val=None, backbone=None, log=print):
    """Train `config` on `dataset` (a COCOPose), writing checkpoints and logs to out_dir.

    resume: a directory with last.safetensors + last.resume.pd, or None. val: (ann file, image dir)
    for validation AP, or None. backbone: (weights file, sha256) for a fresh start, or None.
    Returns a FitResult; on Ctrl-C it saves and returns with interrupted=True.
    """
    # Fresh name counters: parameter and Adam accumulator names (the optimizer state's keys) must not
    # depend on what ran before in this process, or a resumed optimizer would not find its state.
    if paddle.distributed.get_rank() != 0:
        log = _silent
    with paddle.utils.unique_name.guard():
        return _train(config, dataset, out_dir, settings, resume, val, backbone, log)


def _silent(message):
    """The log of ranks other than 0: one voice per job."""


def _train(config, dataset, out_dir, settings, resume, val, backbone, log):
    run = _Run(config, dataset, out_dir, settings, backbone if resume is None else None, log)
    if resume is not None:
        run.restore(resume)
    net = paddle.DataParallel(run.model) if run.world_size > 1 else run.model
    run.train_mode()
    os.makedirs(out_dir, exist_ok=True)
    logger = _Logger(out_dir, run.writer and settings.log_every > 0)
    progress = _progress(run.total_steps, run.step, run.writer and settings.progress)
    stop = _StopFlag()
    try:
        with stop, run.watchdog or contextlib.nullcontext():
            run.run_epochs(net, val, logger, progress, stop)
    except KeyboardInterrupt:
        run.result.interrupted = True
    except Exception:
        if not stop.requested:
            raise
        run.result.interrupted = True  # Ctrl-C also reached the loader's worker processes
    finally:
        progress.close()
        logger.close()
        if run.consistent:
            run.save()
    result = run.result
    result.step, result.epoch = run.step, run.epoch
    if result.interrupted:
        log(f"interrupted: saved step {run.step} to {out_dir}; continue with --resume {out_dir}")
    return result


def _lr_schedule(settings, steps_per_epoch):
    """The tutorial's piecewise decay: x0.1 at each of settings.lr_steps, fractions of all epochs' steps."""
    boundaries = [int(f * steps_per_epoch * settings.epochs) for f in settings.lr_steps]
    values = [settings.lr * 0.1**i for i in range(len(boundaries) + 1)]
    if not boundaries:  # a constant rate; PiecewiseDecay needs one boundary
        boundaries, values = [steps_per_epoch * settings.epochs], [settings.lr] * 2
    return paddle.optimizer.lr.PiecewiseDecay(boundaries=boundaries, values=values)


class _Throughput:
    """Samples per second since the last restart (one log window)."""

    def __init__(self):
        self.restart()

    def restart(self):
        self.start, self.samples = time.perf_counter(), 0

    def add(self, samples):
        self.samples += samples
        return self.samples / max(time.perf_counter() - self.start, 1e-9)


class _Run:
    """One fit run: the network, its optimizer and schedule, and where the run stands in them.

    Built in the order the seeded RNG sees: weight init (then backbone weights), and on restore() the
    saved RNG state, so a resumed run continues exactly.
    """

    def __init__(self, config, dataset, out_dir, settings, backbone, log):
        self.config, self.dataset, self.out_dir, self.settings, self.log = config, dataset, out_dir, settings, log
        self.on_gpu = _device()
        self.world_size, self.rank = _start_ranks(settings.batch_size)
        self.writer = self.rank == 0  # only rank 0 writes
        paddle.seed(settings.seed)
        self.model = build_model(config)
        if backbone is not None:
            load_backbone_weights(self.model, *backbone)
        self.rank_batch = settings.batch_size // self.world_size
        self.sampler = EpochBatchSampler(len(dataset), self.rank_batch, settings.seed, shuffle=True,
                                         rank=self.rank, world_size=self.world_size)
        self.steps_per_epoch = len(self.sampler)
        self.total_steps = self.steps_per_epoch * settings.epochs
        if settings.max_steps:
            self.total_steps = min(self.total_steps, settings.max_steps)
        self.scheduler = _lr_schedule(settings, self.steps_per_epoch)
        self.optimizer = paddle.optimizer.Adam(learning_rate=self.scheduler, parameters=self.model.parameters())
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**15) if self.on_gpu else None
        # what decides the batch order, augmentation and targets: a resume must match it to replay the same batches
        self.signature = {"config": config.name, "num_samples": len(dataset), "batch_size": settings.batch_size,
                          "world_size": self.world_size, "epochs": settings.epochs, "seed": settings.seed,
                          "augment": dataset.augmentation is not None, "target_encoding": dataset.target_encoding}
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.consistent = True  # model and optimizer are between steps: safe to save
        self.result = FitResult(out_dir, 0, 0, False, float("nan"))
        several = self.world_size > 1 and settings.rank_timeout_s > 0
        self.watchdog = RankWatchdog(settings.rank_timeout_s, self.rank) if several else None
        log(f"batch: {settings.batch_size} global = {self.world_size} rank(s) x {self.rank_batch}; lr {settings.lr} "
            f"for the global batch; {dataset.target_encoding} targets"
            + ("; BatchNorm frozen" if settings.freeze_batchnorm else ""))

    def train_mode(self):
        """Training mode, with the BatchNorm layers in eval mode when settings.freeze_batchnorm."""
        self.model.train()
        if self.settings.freeze_batchnorm:
            for layer in self.model.sublayers():
                if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
                    layer.eval()

    def checkpoint_meta(self, **extra):
        return CheckpointMeta(config=self.config.name, color_order=COLOR_ORDER, epoch=self.epoch, step=self.step,
                              target_encoding=self.dataset.target_encoding, extra=extra)

    def restore(self, directory):
        """Weights, optimizer, schedule, AMP scaler, RNG and position of the run saved in `directory`."""
        state = _load_resume(directory, self.config, self.signature)
        load_model_state(self.model, state["weights"], source=os.path.join(directory, WEIGHTS_FILE))
        _restore_optimizer(self.optimizer, self.scheduler, self.model, state["optimizer"],
                           os.path.join(directory, RESUME_FILE))
        self.scheduler.set_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if len(state["paddle_rng"]) == len(paddle.get_rng_state()):  # same device kind
            paddle.set_rng_state(state["paddle_rng"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.result.best_ap = state["best_ap"]
        self.log(f"resumed from {directory}: epoch {self.epoch}, step {self.step}")

    def run_epochs(self, net, val, logger, progress, stop):
        """Train from the current position to the last epoch or max_steps, or until stop is requested."""
        settings, throughput = self.settings, _Throughput()
        while self.step < self.total_steps and self.epoch < settings.epochs:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            loader = paddle.io.DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=settings.workers,
                                          return_list=True)
            for images, targets, weights in loader:
                loss, lr, heatmaps = self.optimizer_step(net, images, targets, weights)
                self.beat()
                self.result.last_loss = float(loss)
                rate = throughput.add(len(images) * self.world_size)
                progress.update(1)
                progress.set_postfix(epoch=self.epoch, loss=f"{self.result.last_loss:.3g}", samples_s=f"{rate:.1f}")
                if settings.log_every and self.step % settings.log_every == 0:
                    logger.log(self.step, self.epoch, self.global_loss(loss), lr, rate,
                               heatmaps[0].astype("float32").numpy())
                    throughput.restart()
                if settings.save_every_steps and self.step % settings.save_every_steps == 0:
                    self.save()
                if stop.requested or self.step >= self.total_steps:
                    break
            if stop.requested:
                self.result.interrupted = True
                break
            if self.batch_in_epoch >= self.steps_per_epoch:
                self.finish_epoch(val)

    def optimizer_step(self, net, images, targets, weights):
        """One Adam step (AMP on GPU) -> loss, the learning rate it used, output heatmaps (B, K, h, w)."""
        self.consistent = False
        with paddle.amp.auto_cast() if self.on_gpu else contextlib.nullcontext():
            heatmaps = net(images)
        loss = heatmap_loss(heatmaps, targets, weights)
        if self.scaler is not None:
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.minimize(self.optimizer, scaled)
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        lr = self.scheduler.get_lr()
        self.scheduler.step()
        self.step, self.batch_in_epoch = self.step + 1, self.batch_in_epoch + 1
        self.consistent = True
        return loss, lr, heatmaps

    def beat(self):
        if self.watchdog is not None:
            self.watchdog.beat()

    def global_loss(self, loss):
        """The loss of the whole global batch: the mean of the ranks' (equal-sized) batch losses."""
        if self.world_size == 1:
            return float(loss)
        total = loss.detach().clone()
        paddle.distributed.all_reduce(total)  # every rank logs at the same steps, so all take part
        return float(total) / self.world_size

    def finish_epoch(self, val):
        """Move to the next epoch; validate when due (val given, rank 0); save if not saving by steps."""
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        due = self.epoch % self.settings.val_every_epochs == 0 or self.epoch == self.settings.epochs
        if val is not None and due:
            if self.writer:
                self.record_validation(val)
            if self.world_size > 1:  # the others wait here, not inside the next step's all-reduce
                paddle.distributed.barrier()
            self.beat()
        if not self.settings.save_every_steps:
            self.save()

    def record_validation(self, val):
        """Validation AP now; the weights go to best.safetensors when it beats the best so far."""
        stats = _validate(self.model, self.config, val, self.dataset.target_encoding)
        self.train_mode()
        self.result.validation.append((self.epoch, stats))
        self.log(f"epoch {self.epoch}: validation AP {stats['AP']:.4f}")
        if stats["AP"] > self.result.best_ap:
            self.result.best_ap = stats["AP"]
            meta = self.checkpoint_meta(validation={k: float(v) for k, v in stats.items()})
            save_checkpoint(os.path.join(self.out_dir, BEST_FILE), model_state(self.model), meta)

    def save(self):
        """last.safetensors and last.resume.pd at the current position (rank 0 only)."""
        if not self.writer:
            return
        blob = self.resume_blob()
        save_checkpoint(os.path.join(self.out_dir, WEIGHTS_FILE), model_state(self.model), self.checkpoint_meta())
        write_atomic(os.path.join(self.out_dir, RESUME_FILE), blob)

    def resume_blob(self):
        """Everything besides the weights that an exact resume needs, as paddle.save bytes (pickle)."""
        state = {
            "version": RESUME_VERSION,
            "signature": self.signature,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,   # the sampler's position in `epoch`
            "step": self.step,
            "best_ap": self.result.best_ap,
            "optimizer": _optimizer_state(self.optimizer, self.model),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "paddle_rng": paddle.get_rng_state(),
        }
        buffer = io.BytesIO()
        paddle.save(state, buffer)
        return buffer.getvalue()


def _progress(total, initial, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)


def _load_resume(directory, config, signature):
    """Weights and training state from a fit output directory; both must be from the same step."""
    weights_path, resume_path = os.path.join(directory, WEIGHTS_FILE), os.path.join(directory, RESUME_FILE)
    if not os.path.isfile(resume_path):
        raise FitError(f"--resume {directory}: no {RESUME_FILE} there (expected a fit --out directory)")
    weights, meta = load_checkpoint(weights_path, expected_config=config.name)
    # pickle: this is the file fit wrote on this machine (see the module docstring)
    state = paddle.load(resume_path, return_numpy=True)
    if not isinstance(state, dict) or state.get("version") != RESUME_VERSION:
        raise FitError(f"--resume {resume_path}: not a livepose-train resume file (version {RESUME_VERSION})")
    if state["step"] != meta.step:
        raise FitError(f"--resume {directory}: {WEIGHTS_FILE} is from step {meta.step} but {RESUME_FILE} "
                       f"from step {state['step']}; they must come from the same save")
    saved = {"target_encoding": "standard", **state["signature"]}  # runs from before the encodings were named
    different = {k: (saved.get(k), v) for k, v in signature.items() if saved.get(k) != v}
    if different:
        raise FitError(f"--resume {directory}: the run was started with other settings; "
                       + ", ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in different.items()))
    state["weights"] = weights
    return state


# ---------------------------------------------------------------- overfit check

def keypoint_errors(model, dataset, batch_size=16):
    """Decoded keypoints vs the warped ground truth, in heatmap pixels, for every labelled joint in view.

    The model runs in eval mode (BatchNorm running statistics, as at inference). Returns (M,) distances.
    """
    from livepose.core.decode import decode_heatmaps

    model.eval()
    errors = []
    try:
        with paddle.no_grad():
            for start in range(0, len(dataset), batch_size):
                indices = range(start, min(start + batch_size, len(dataset)))
                samples = [dataset.sample(i) for i in indices]
                images = np.stack([dataset[i][0] for i in indices])
                heatmaps = model(paddle.to_tensor(images)).numpy()
                coords, _ = decode_heatmaps(heatmaps)
                stride = np.array(dataset.config.input_size[::-1]) / np.array(heatmaps.shape[:1:-1])
                for sample, xy in zip(samples, coords):
                    usable = (sample.visible > 0) & (sample.weight > 0)
                    errors.append(np.linalg.norm(xy[usable] - sample.joints[usable] / stride, axis=1))
    finally:
        model.train()
    return np.concatenate(errors)


def overfit_persons(ann_file, images_dir, config, persons):
    """The `persons` most completely labelled persons (ties by annotation id) that pass the filters."""
    records = load_coco_persons(ann_file, images_dir, config.input_size)
    ranked = sorted(records, key=lambda r: (-int((r.visible > 0).sum()), r.annotation_id))
    return ranked[:persons]


def overfit_checkpoint(out_path, ann_file, images_dir, config="r18-256x192", persons=8, steps=240, seed=0,
                       lr=1e-3, workers=0):
    """Train `config` on `persons` real persons, augmentation off, one full batch per step, for `steps`
    Adam steps at a constant `lr`, and write the weights to out_path.

    Returns the mean keypoint error in heatmap px (eval mode) over those persons' labelled joints.
    A model that has memorised real persons: for checking reduced-precision exports against a
    network whose heatmaps have real peaks. From random init the loss sits on a plateau (predicting
    ~0 everywhere) for ~150 steps; the tutorial's decay at 60 % would stop it there, so the rate is
    constant. r18-256x192, 8 persons: 0.84 px after 200 steps, 0.46 px after 240 (this CPU, ~2 s a step).
    """
    cfg = get_config(config)
    dataset = COCOPose(overfit_persons(ann_file, images_dir, cfg, persons), cfg, augmentation=None, seed=seed)
    settings = FitSettings(epochs=steps, batch_size=persons, lr=lr, lr_steps=(), workers=workers, seed=seed,
                           augment=False, save_every_steps=steps, log_every=0, progress=False)
    with tempfile.TemporaryDirectory() as work:
        train(cfg, dataset, work, settings, log=lambda message: None)
        weights, meta = load_checkpoint(os.path.join(work, WEIGHTS_FILE))
    with paddle.utils.unique_name.guard():
        model = build_model(cfg)
    load_model_state(model, weights)
    error = float(keypoint_errors(model, dataset).mean())
    meta = replace(meta, weights_source=f"livepose-train overfit on {persons} persons of {os.path.basename(ann_file)}",
                   extra={"overfit_mean_error_heatmap_px": error, "persons": persons})
    save_checkpoint(out_path, weights, meta)
    return error


# ---------------------------------------------------------------- command line

def add_arguments(parser):
    parser.description = __doc__.split("\n\n")[0]
    parser.epilog = (
        "--resume reads OUT/last.resume.pd with paddle.save's format, which is pickle: resume only from a "
        "directory your own fit run wrote. Model weights (*.safetensors) are pickle-free."
    )
    parser.add_argument("--config", required=True, choices=sorted(CONFIGS), help="model configuration")
    parser.add_argument("--data", help="COCO root: annotations/person_keypoints_train2017.json and "
                                       "train2017/ (or images/train2017/); val2017 for validation")
    parser.add_argument("--ann", help="training annotation file (COCO person keypoints JSON)")
    parser.add_argument("--images", help="folder of the training images")
    parser.add_argument("--val-ann", help="validation annotation file (with --data: val2017 by default)")
    parser.add_argument("--val-images", help="folder of the validation images")
    parser.add_argument("--no-val", action="store_true", help="skip validation")
    parser.add_argument("--out", default="runs/fit", help="output directory (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="default: the config's (140, the tutorial's)")
    parser.add_argument("--batch-size", type=int,
                        help="global batch (samples per optimizer step), split evenly over the ranks of a "
                             "paddle.distributed.launch job; default: the config's")
    parser.add_argument("--lr", type=float, help="Adam learning rate; default: the config's (1e-3)")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds init, batch order and augmentation")
    parser.add_argument("--resume", metavar="DIR|auto",
                        help="continue the run saved in DIR (a previous --out); auto: --out if it holds one. "
                             "Reads a pickle file: only your own runs")
    parser.add_argument("--save-every-steps", type=int, default=1000,
                        help="save every N steps (0: at the end of each epoch); always on exit (default: %(default)s)")
    parser.add_argument("--val-every-epochs", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--log-every", type=int, default=50, help="log every N steps (0: off; default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after N steps in all (0: all epochs)")
    parser.add_argument("--no-augment", action="store_true", help="plain crops: no flip, scale, rotation, half-body")
    parser.add_argument("--freeze-bn", action="store_true",
                        help="keep BatchNorm statistics fixed (eval mode), e.g. to check N ranks against one process")
    parser.add_argument("--rank-timeout", type=float, default=3600.0, metavar="SECONDS",
                        help="several ranks: a rank that finishes no step or validation for this long stops the "
                             "job (0: never; must exceed a validation's time; default: %(default)s)")
    parser.add_argument("--target-encoding", choices=TARGET_ENCODINGS, default="standard",
                        help="standard: Gaussians centred on the nearest heatmap pixel (SimpleBaselines); "
                             "unbiased: UDP (Huang et al. 2020) sub-pixel centres and unit-length crop geometry, "
                             "decoded with DARK (default: %(default)s)")
    parser.add_argument("--no-select", action="store_true", help="keep persons the tutorial's _select_data drops")
    parser.add_argument("--backbone-weights", metavar="FILE",
                        help="ImageNet ResNet weights (Paddle .pdparams, read with pickle after the checksum "
                             "matches, or .safetensors)")
    parser.add_argument("--backbone-sha256", metavar="HEX", help="SHA-256 of --backbone-weights")
    parser.add_argument("--debug-dump", nargs=2, metavar=("DIR", "N"),
                        help="write the first N training samples (crop, joints, 17 targets) as PNGs to DIR and exit")


def run(args):
    try:
        config = get_config(args.config)
    except ValueError as error:
        print(f"livepose-train fit: error: {error}", file=sys.stderr)
        return 2
    try:
        ann, images = coco_paths(args.data, args.ann, args.images, "train")
        val = None
        if not args.no_val:
            if args.val_ann or args.val_images:
                val = coco_paths(None, args.val_ann, args.val_images)
            elif args.data:
                val = coco_paths(args.data, split="val")
        settings = FitSettings.from_config(
            config, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, workers=args.workers, seed=args.seed,
            augment=not args.no_augment, save_every_steps=args.save_every_steps,
            val_every_epochs=args.val_every_epochs, log_every=args.log_every, max_steps=args.max_steps,
            freeze_batchnorm=args.freeze_bn, rank_timeout_s=args.rank_timeout)
        records = load_coco_persons(ann, images, config.input_size, config.num_keypoints, select=not args.no_select)
        if val is not None and not os.path.isfile(val[0]):
            raise DatasetError(f"validation annotation file {val[0]}: no such file (or pass --no-val)")
        dataset = COCOPose(records, config, Augmentation() if settings.augment else None, settings.seed,
                           target_encoding=args.target_encoding)
        if args.debug_dump:
            directory, count = args.debug_dump
            paths = dump_debug(dataset, directory, int(count))
            print(f"wrote {len(paths)} debug samples to {directory}")
            return 0
        resume = args.resume
        if resume == "auto":
            resume = args.out if os.path.isfile(os.path.join(args.out, RESUME_FILE)) else None
        backbone = (args.backbone_weights, args.backbone_sha256) if args.backbone_weights else None
        if paddle.distributed.get_rank() == 0:
            print(f"{config.name}: {len(dataset)} persons from {ann}, {settings.epochs} epochs of global batch "
                  f"{settings.batch_size}, output in {args.out}")
        result = train(config, dataset, args.out, settings, resume=resume, val=val, backbone=backbone)
    except (DatasetError, CheckpointError, FitError) as error:
        rank = paddle.distributed.get_rank()
        where = f" (rank {rank} of {paddle.distributed.get_world_size()})" if paddle.distributed.get_world_size() > 1 else ""
        print(f"livepose-train fit{where}: error: {error}", file=sys.stderr)
        return 2
    return 130 if result.interrupted else 0
