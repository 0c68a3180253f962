"""Tracking figures: livepose's tracker against ultralytics' ByteTrack and BoT-SORT on the same detections.

    python benchmarks/tracking.py synthetic         # MOTA, IDF1, ID switches, precision, recall on
                                                    # synthetic scenes of real COCO poses (ground truth known)
    python benchmarks/tracking.py video V [--gt GT.txt] [--max-frames N]
                                                    # YOLOX-Nano on a video, the same detections to every
                                                    # tracker; with a MOTChallenge ground truth: the metrics,
                                                    # without: id statistics (tracks, mean length, fragments)
    python benchmarks/tracking.py cost              # tracking + smoothing ms per frame at 1, 10, 50 persons
    python benchmarks/tracking.py smoothing         # jitter and lag on the issue's walking trajectory

ByteTrack and BoT-SORT need ultralytics (the `yolo` extra, in its own environment: it pulls torch and
opencv-python); without it only livepose's rows are printed. BoT-SORT runs without ReID and GMC, both
with ultralytics' shipped yaml defaults. livepose's tracker runs boxes only on the video (the CLI's
behaviour with an untrained pose model, whose pose terms switch off) and with poses on the synthetic
scenes. py-motmetrics computes every metric; its iou_matrix calls np.asfarray (gone in numpy 2), so the
IoU distances come from livepose.tracking.cost.iou_matrix with motmetrics' 0.5 gate instead.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from livepose.core.types import Detections  # noqa: E402
from livepose.tracking.cost import iou_matrix  # noqa: E402
from livepose.tracking.synthetic import Person, Scene, coco_poses, pose_lookup  # noqa: E402
from livepose.tracking.tracker import Tracker, TrackerSettings  # noqa: E402

COCO = REPO.parent / "shared" / "data" / "coco" / "coco_train2017_subset" / "person_keypoints.json"
METRICS = ("mota", "idf1", "num_switches", "precision", "recall")
IOU_GATE = 0.5  # motmetrics' usual max distance 0.5 on 1 - IoU


class UltralyticsBoxes:
    """The detections object ultralytics' trackers take: conf, xyxy, xywh, cls, boolean indexing."""

    def __init__(self, xyxy, conf):
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.conf = np.asarray(conf, np.float32).reshape(-1)
        self.cls = np.zeros(len(self.conf), np.float32)
        self.xywh = np.concatenate([(self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2, self.xyxy[:, 2:] - self.xyxy[:, :2]], 1)

    def __getitem__(self, index):
        return UltralyticsBoxes(self.xyxy[index], self.conf[index])

    def __len__(self):
        return len(self.conf)


def peer_trackers():
    """{name: factory} of ultralytics' trackers with their shipped yaml defaults ({} without ultralytics)."""
    try:
        import ultralytics
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import YAML, IterableSimpleNamespace
    except ImportError:
        return {}
    folder = Path(ultralytics.__file__).parent / "cfg" / "trackers"

    def botsort():
        settings = {**YAML.load(folder / "botsort.yaml"), "with_reid": False, "gmc_method": "none"}
        return BOTSORT(IterableSimpleNamespace(**settings))

    return {"ByteTrack": lambda: BYTETracker(IterableSimpleNamespace(**YAML.load(folder / "bytetrack.yaml"))),
            "BoT-SORT": botsort}


class LiveposeRun:
    """livepose's tracker over recorded frames: update(t, detections, estimate) -> (boxes, ids)."""

    def __init__(self, settings=TrackerSettings()):
        self.tracker = Tracker(settings)

    def __call__(self, timestamp, detections, estimate=None, image=None):
        poses = self.tracker.update(timestamp, detections, estimate)
        return poses.boxes, poses.track_ids


class PeerRun:
    def __init__(self, factory):
        self.tracker = factory()

    def __call__(self, timestamp, detections, estimate=None, image=None):
        out = self.tracker.update(UltralyticsBoxes(detections.boxes, detections.scores), image)
        out = np.asarray(out).reshape(-1, 8)
        return out[:, :4], out[:, 4].astype(int)


def track_frames(frames, run):
    """frames: [(index, t, Detections, Poses or None, truth boxes, truth ids)] -> per frame (boxes, ids)."""
    image = np.zeros((8, 8, 3), np.uint8)
    return [run(t, detections, pose_lookup(poses) if poses is not None else None, image)
            for _, t, detections, poses, _, _ in frames]


def mot_metrics(frames, hypotheses):
    """MOTA, IDF1, ID switches, precision, recall by py-motmetrics; frames carry the truth."""
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for (_, _, _, _, truth_boxes, truth_ids), (boxes, ids) in zip(frames, hypotheses):
        distance = 1.0 - iou_matrix(truth_boxes, boxes)
        distance[distance > IOU_GATE] = np.nan
        accumulator.update(list(truth_ids), list(ids), distance)
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(METRICS), name="run")
    return {name: float(summary[name].iloc[0]) for name in METRICS}


def id_statistics(hypotheses):
    """Without ground truth: tracks, mean track length (frames reported), fragments (times an id
    comes back after frames without it)."""
    seen, fragments = {}, 0
    for frame, (_, ids) in enumerate(hypotheses):
        for track_id in np.asarray(ids).tolist():
            if track_id in seen and seen[track_id][1] != frame - 1:
                fragments += 1
            count = seen.get(track_id, (0, None))[0]
            seen[track_id] = (count + 1, frame)
    lengths = [count for count, _ in seen.values()]
    return {"tracks": len(seen), "mean_length": float(np.mean(lengths)) if lengths else 0.0, "fragments": fragments}


def scenes(poses):
    """The CI scenes and a crowd, each {name: Scene}; heights and speeds of pedestrians in video."""
    p = lambda n: poses[n % len(poses)]  # noqa: E731
    two = [Person(p(0), (100, 300), (120, 0), 150.0), Person(p(1), (600, 305), (-120, 0), 150.0)]
    rng = np.random.default_rng(7)
    crowd = []
    for n in range(8):
        start = (rng.uniform(50, 1230), rng.uniform(150, 600))
        hidden_at = rng.uniform(2, 16)
        crowd.append(Person(p(n + 2), start, (rng.uniform(-90, 90), rng.uniform(-15, 15)), rng.uniform(100, 200),
                            hidden=((hidden_at, hidden_at + rng.uniform(0.5, 1.5)),), score=0.6))
    dropped = {i for i in range(10, 100) if i % 4 == 1 or i % 7 == 3}
    return {
        "crossing": Scene(two, 100),
        "hidden 1 s": Scene([Person(p(2), (100, 300), (100, 0), 150.0, hidden=((1.0, 2.0),)), two[1]], 100),
        "enter/leave": Scene([Person(p(3), (100, 300), (60, 0), 150.0, vanish=2.0),
                              Person(p(4), (500, 300), (-60, 0), 150.0, appear=1.2)], 100),
        "miss every 3rd": Scene(two, 100, missed={i for i in range(100) if i % 3 == 2}),
        "dropped frames": Scene([Person(p(0), (100, 300), (300, 0), 150.0), Person(p(1), (900, 310), (-300, 0), 150.0)],
                                100, dropped=dropped),
        # two people meet, overlap and both turn back: motion alone predicts them through each other
        "meet, turn back": Scene([Person(p(0), (200, 300), (100, 0), 150.0, turn=1.6),
                                  Person(p(1), (520, 300), (-100, 0), 150.0, turn=1.6)], 100),
        "crowd of 8": Scene(crowd, 500, box_noise=0.03, score_noise=0.2,
                            missed=set(rng.choice(500, 50, replace=False).tolist())),
    }


def synthetic_table():
    poses = coco_poses(COCO)
    runners = {"livepose (poses)": lambda: LiveposeRun(),
               "livepose (boxes)": lambda: LiveposeRun(TrackerSettings(use_pose=False))}
    runners.update({name: (lambda factory=factory: PeerRun(factory)) for name, factory in peer_trackers().items()})
    print(f"{'scene':<16} {'tracker':<18} " + " ".join(f"{m:>12}" for m in METRICS))
    totals = {name: [] for name in runners}
    for scene_name, scene in scenes(poses).items():
        frames = list(scene.frames_with_truth())
        frames = [(i, t, d, ps, tb, tt) for i, t, d, ps, _, tb, tt in frames]
        for name, make in runners.items():
            figures = mot_metrics(frames, track_frames(frames, make()))
            totals[name].append(figures)
            print(f"{scene_name:<16} {name:<18} " + " ".join(f"{figures[m]:>12.3f}" for m in METRICS))
    print("mean / total ID switches:")
    for name, rows in totals.items():
        print(f"  {name:<18} IDF1 {np.mean([r['idf1'] for r in rows]):.3f}  MOTA {np.mean([r['mota'] for r in rows]):.3f}"
              f"  ID switches {int(sum(r['num_switches'] for r in rows))}")


def video_frames(video, detector_path, max_frames, floor, cache=None):
    """[(index, t, Detections, None, truth boxes, truth ids)] of a video by YOLOX-Nano (truth empty);
    `cache`: an .npz keeping the detections between runs (the detector is the slow part)."""
    from livepose.runtime.detector import PersonDetector
    from livepose.stream.sources import VideoSource

    if cache and Path(cache).is_file():
        stored = np.load(cache)
        counts = np.cumsum(np.concatenate([[0], stored["counts"]]))
        return [(i, float(t), Detections(stored["boxes"][a:b], stored["scores"][a:b]), None, np.zeros((0, 4)),
                 np.zeros(0, int)) for i, (t, a, b) in enumerate(zip(stored["times"], counts[:-1], counts[1:]))]
    detector = PersonDetector(detector_path, score_threshold=floor)
    source = VideoSource(video)
    try:
        frames = [(f.index, f.timestamp, detector(f.image), None, np.zeros((0, 4)), np.zeros(0, int))
                  for f in source.frames(max_frames)]
    finally:
        source.release()
        detector.close()
    if cache:
        np.savez(cache, times=[f[1] for f in frames], counts=[len(f[2]) for f in frames],
                 boxes=np.concatenate([f[2].boxes for f in frames]), scores=np.concatenate([f[2].scores for f in frames]))
    return frames


def load_mot_truth(path, frames):
    """Ground truth boxes (0-based pixels) and ids per frame from a MOTChallenge gt.txt (class 1, flag 1)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    if rows.shape[1] >= 8:
        rows = rows[(rows[:, 6] != 0) & (rows[:, 7] == 1)] if rows.shape[1] >= 8 else rows
    out = []
    for index, t, detections, poses, _, _ in frames:
        mine = rows[rows[:, 0] == index + 1]
        boxes = np.concatenate([mine[:, 2:4] - 1, mine[:, 2:4] - 1 + mine[:, 4:6]], axis=1)
        out.append((index, t, detections, poses, boxes, mine[:, 1].astype(int)))
    return out


def video_table(args):
    from livepose.cli.common import DEFAULT_BOX_THRESHOLD
    from livepose.tracking.tracker import LOW_SCORE

    # what `livepose video` does by default: the detector down to the tracker's floor, new people
    # from --box-threshold up; every tracker gets the same boxes
    frames = video_frames(args.video, args.detector, args.max_frames, LOW_SCORE, args.cache)
    runners = {"livepose": lambda: LiveposeRun(TrackerSettings(high_score=DEFAULT_BOX_THRESHOLD, low_score=LOW_SCORE))}
    runners.update({name: (lambda factory=factory: PeerRun(factory)) for name, factory in peer_trackers().items()})
    print(f"{args.video}: {len(frames)} frames, {sum(len(f[2]) for f in frames)} detections >= {LOW_SCORE} "
          "(the CLI's floor when tracking), the same for every tracker")
    if args.gt:
        frames = load_mot_truth(args.gt, frames)
    for name, make in runners.items():
        hypotheses = track_frames(frames, make())
        figures = mot_metrics(frames, hypotheses) if args.gt else id_statistics(hypotheses)
        print(f"  {name:<10} " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()))


def cost_table(frames_per_run=200):
    """Tracking + smoothing per frame (poses given, the network not timed) at 1, 10 and 50 persons:
    wall-clock median and this thread's CPU time (other programs on a shared machine inflate the first)."""
    poses = coco_poses(COCO)
    print("tracking + smoothing per frame (IoU + OKS association, One-Euro on every joint):")
    for count in (1, 10, 50):
        rng = np.random.default_rng(count)
        people = [Person(poses[n % len(poses)], (rng.uniform(0, 1800), rng.uniform(100, 1000)),
                         (rng.uniform(-60, 60), rng.uniform(-10, 10)), 120.0) for n in range(count)]
        frames = list(Scene(people, frames_per_run))
        answers = [pose_lookup(p)(d) for _, _, d, p, _ in frames]  # the 'network' outside the timing
        tracker = Tracker(TrackerSettings())
        wall, cpu = [], []
        for (_, t, detections, _, _), answer in zip(frames, answers):
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            tracker.update(t, detections, lambda boxes, answer=answer: answer.select(
                iou_matrix(boxes.boxes, answer.boxes).argmax(axis=1)) if len(boxes) != len(answer) else answer)
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.thread_time() - start_cpu)
        print(f"  {count:>3} persons: {np.median(wall) * 1000:6.3f} ms wall (median), "
              f"{np.mean(cpu[10:]) * 1000:6.3f} ms CPU (mean)")


def smoothing_figures():
    from livepose.tracking.jitter import jitter, lag_seconds, plain_one_euro, tracked_keypoints, walk

    poses = coco_poses(COCO)
    rows = []
    for n in range(0, len(poses), 3):
        truth, noisy, times = walk(poses[n], seed=n)
        visible = poses[n][1] > 0
        raw = jitter(noisy[:, visible], truth[:, visible])
        for name, out in (("livepose", tracked_keypoints(noisy, times, poses[n][1])),
                          ("plain One-Euro", plain_one_euro(noisy, times))):
            rows.append((name, raw / jitter(out[:, visible], truth[:, visible]),
                         lag_seconds(out[:, visible], truth[:, visible], times)))
    print("walking 1.5 body heights/s, joint noise 2 % of the height, 25 fps, "
          f"{len(rows) // 2} COCO poses: RMS frame-to-frame jitter reduction and lag (cross-correlation)")
    for name in ("livepose", "plain One-Euro"):
        mine = [r for r in rows if r[0] == name]
        print(f"  {name:<15} jitter {min(r[1] for r in mine):.2f}x - {max(r[1] for r in mine):.2f}x lower, "
              f"lag {max(r[2] for r in mine) * 1000:.0f} ms at most")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("synthetic")
    commands.add_parser("cost")
    commands.add_parser("smoothing")
    video = commands.add_parser("video")
    video.add_argument("video")
    video.add_argument("--gt", help="MOTChallenge ground truth (gt.txt)")
    video.add_argument("--detector", default=str(REPO.parent / "shared" / "data" / "models" / "yolox_nano.onnx"))
    video.add_argument("--max-frames", type=int)
    video.add_argument("--cache", help="an .npz to keep the detections in between runs")
    args = parser.parse_args()
    {"synthetic": synthetic_table, "cost": cost_table, "smoothing": smoothing_figures,
     "video": lambda: video_table(args)}[args.command]()


if __name__ == "__main__":
    main()
