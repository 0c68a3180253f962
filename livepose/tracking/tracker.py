"""An online multi-person tracker: Poses in, Poses with track ids out.

Association as ByteTrack does it, in stages, each an optimal assignment (scipy's
linear_sum_assignment) on a similarity of IoU and, where both poses are confident, OKS:
  1. confident detections against every confirmed or lost track (a lost track that reappears
     near its predicted place gets its id back);
  2. low-score detections against the confirmed tracks still unmatched, by IoU alone: a person
     half hidden scores low but is still there;
  3. the confident detections left against tentative tracks; the rest start tentative tracks.
Life cycle: tentative (no id yet) -> confirmed after CONFIRM_HITS matched frames in a row (at once
on the first frame of a run) -> lost when unmatched -> removed after MAX_LOST_SECONDS without a
match. Ids are handed out on confirmation, 1, 2, 3, ... and never reused, so a one-frame false
detection costs no id. Time is the frames' timestamps in seconds: a live source that drops frames
predicts further, not wrongly.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from livepose.core.types import Detections, Poses
from livepose.tracking import kalman
from livepose.tracking.cost import KEYPOINT_THRESHOLD, similarity_matrix
from livepose.tracking.smoothing import OneEuroSettings, one_euro_step

# ByteTrack's split: a confident box (a person: the CLI's --box-threshold, YOLOX's demo default
# 0.3) may start a track; one down to 0.1 (ByteTrack's floor, below which boxes are noise) only
# extends a track that is already there (a half-hidden person scores low)
HIGH_SCORE = 0.3
LOW_SCORE = 0.1
# ByteTrack's gates as similarities: 1 - its match_thresh 0.8 (stage 1), 0.5 (stage 2), 0.7 (tentative)
MATCH_SIMILARITY = 0.2
LOW_MATCH_IOU = 0.5
TENTATIVE_SIMILARITY = 0.3
# two frames in a row: one stray box makes no track, and a real person is reported from their 2nd frame
CONFIRM_HITS = 2
# ByteTrack keeps a lost track 30 frames (1 s at 30 fps); people hidden behind a passer-by or a
# pillar reappear after 1-2 s, and the prediction's growing uncertainty still gates by IoU, so 2 s
MAX_LOST_SECONDS = 2.0

TENTATIVE, CONFIRMED, LOST = "tentative", "confirmed", "lost"


@dataclass(frozen=True)
class TrackerSettings:
    """What the tracker does; every field has a reasoned default (see the module constants)."""

    high_score: float = HIGH_SCORE
    low_score: float = LOW_SCORE
    match_similarity: float = MATCH_SIMILARITY
    low_match_iou: float = LOW_MATCH_IOU
    tentative_similarity: float = TENTATIVE_SIMILARITY
    confirm_hits: int = CONFIRM_HITS
    max_lost_seconds: float = MAX_LOST_SECONDS
    use_pose: bool = True          # OKS in the cost; off for an untrained pose model
    smooth: bool = True            # One-Euro on the keypoints (raw ones with smooth=False)
    smoothing: OneEuroSettings = field(default_factory=OneEuroSettings)

    def __post_init__(self):
        if not (isinstance(self.max_lost_seconds, (int, float)) and math.isfinite(self.max_lost_seconds)
                and self.max_lost_seconds > 0):
            raise ValueError(f"tracker max_lost_seconds: expected a positive number of seconds, got {self.max_lost_seconds!r}")
        if not (isinstance(self.confirm_hits, int) and self.confirm_hits >= 1):
            raise ValueError(f"tracker confirm_hits: expected an integer >= 1, got {self.confirm_hits!r}")
        for name in ("high_score", "low_score", "match_similarity", "low_match_iou", "tentative_similarity"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"tracker {name}: expected a value between 0 and 1, got {getattr(self, name)!r}")
        if self.low_score > self.high_score:
            raise ValueError(f"tracker low_score {self.low_score} is above high_score {self.high_score}")


class Track:
    """One person over time: Kalman state of the box, last pose, life-cycle state, smoothing."""

    def __init__(self, box, box_score, keypoints, scores, timestamp):
        means, covariances = kalman.initiate(kalman.xyxy_to_cxcywh(box))
        self.mean, self.covariance = means[0], covariances[0]
        self.track_id, self.state, self.hits = 0, TENTATIVE, 1
        self.time = self.last_seen = timestamp   # time of the state / of the last match
        self.box, self.box_score = np.asarray(box, np.float32), float(box_score)
        self.keypoints, self.scores = keypoints, scores
        self.updated_center = self.mean[:2].copy()
        # One-Euro state, reset with the track: a new person starts unfiltered
        self.anchor = self.filter_value = self.filter_speed = self.filter_time = None

    @property
    def predicted_box(self):
        """(4,) x1, y1, x2, y2 of the current state."""
        return kalman.cxcywh_to_xyxy(self.mean[:4])[0]

    def moved_keypoints(self):
        """(K, 2) last keypoints carried along with the box's predicted motion since the last match."""
        return self.keypoints + (self.mean[:2] - self.updated_center)


def smooth_keypoints(tracks, keypoints, scores, timestamp, settings):
    """(M, K, 2) keypoints of M tracks after One-Euro, filtered relative to each body's anchor.

    keypoints (M, K, 2), scores (M, K): this frame's raw poses of `tracks`. The anchor follows the
    mean motion of the joints confident in this and the track's previous pose (so it neither jumps
    when a joint appears or vanishes nor lags: it carries no filter); the filter then sees only the
    joints' motion relative to the body, where a walking person's joints are nearly still, and
    smooths hard without the lag a filter on walking pixels has.
    """
    confident = scores >= KEYPOINT_THRESHOLD                                          # (M, K)
    previous = np.array([t.keypoints for t in tracks])
    common = confident & (np.array([t.scores for t in tracks]) >= KEYPOINT_THRESHOLD)
    count = common.sum(axis=1)[:, None]                                              # (M, 1)
    moved = np.array([t.mean[:2] - t.updated_center for t in tracks])
    shift = np.where(count > 0, (np.where(common[..., None], keypoints - previous, 0).sum(axis=1)
                                 / np.maximum(count, 1)), moved)
    chosen = np.where(confident.any(axis=1, keepdims=True), confident, True)
    fresh = (np.where(chosen[..., None], keypoints, 0).sum(axis=1) / chosen.sum(axis=1)[:, None])
    anchors = np.array([fresh[m] if t.anchor is None else t.anchor + shift[m] for m, t in enumerate(tracks)])
    offsets = keypoints - anchors[:, None, :]                                         # (M, K, 2)
    started = np.array([t.filter_time is not None and timestamp > t.filter_time for t in tracks])
    out = offsets.copy()
    if started.any():
        live = [t for t, on in zip(tracks, started) if on]
        dt = np.array([timestamp - t.filter_time for t in live])[:, None, None]
        scale = np.array([t.mean[3] for t in live])[:, None, None]
        out[started], speeds = one_euro_step(offsets[started], np.array([t.filter_value for t in live]),
                                             np.array([t.filter_speed for t in live]), dt, scale, settings)
    for m, track in enumerate(tracks):
        if not started[m]:
            track.filter_speed = np.zeros_like(offsets[m])
        else:
            track.filter_speed = speeds[int(started[:m].sum())]
        track.anchor, track.filter_value, track.filter_time = anchors[m], out[m], timestamp
    return (anchors[:, None, :] + out).astype(np.float32)


def assign(similarity, minimum):
    """Optimal one-to-one matches of an (A, B) similarity with every pair at least `minimum`.

    Returns (A', 2) int index pairs, unmatched rows, unmatched columns (both int arrays)."""
    from scipy.optimize import linear_sum_assignment  # here: keeps `import livepose` light

    rows, cols = similarity.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), int), np.arange(rows), np.arange(cols)
    # pairs under the gate get a cost no valid pairing can beat, and are dropped afterwards
    cost = np.where(similarity >= minimum, 1.0 - similarity, 2.0 + rows + cols)
    row_index, col_index = linear_sum_assignment(cost)
    keep = similarity[row_index, col_index] >= minimum
    pairs = np.stack([row_index[keep], col_index[keep]], axis=1)
    free_rows, free_cols = np.ones(rows, bool), np.ones(cols, bool)
    free_rows[pairs[:, 0]], free_cols[pairs[:, 1]] = False, False
    return pairs, np.flatnonzero(free_rows), np.flatnonzero(free_cols)


class Tracker:
    """Track ids for a stream of detections and poses.

    Call `update` on frames where the detector ran and `follow` on frames where the boxes came
    from `carried_boxes` (detect-every-N); both return the frame's Poses of the confirmed tracks
    seen in it, with `track_ids`.
    """

    def __init__(self, settings=TrackerSettings(), num_keypoints=17):
        self.settings = settings
        self.num_keypoints = num_keypoints
        self.tracks = []
        self.next_id = 1
        self.frames = 0

    @property
    def active(self):
        """Confirmed tracks seen in the last frame (those detect-every-N carries)."""
        return [track for track in self.tracks if track.state == CONFIRMED]

    def predict(self, timestamp):
        """Move every track's state to `timestamp` (seconds)."""
        if not self.tracks:
            return
        dt = np.array([max(timestamp - track.time, 0.0) for track in self.tracks])
        means, covariances = kalman.predict(np.array([t.mean for t in self.tracks]),
                                            np.array([t.covariance for t in self.tracks]), dt)
        for track, mean, covariance in zip(self.tracks, means, covariances):
            track.mean, track.covariance, track.time = mean, covariance, timestamp

    def update(self, timestamp, detections, estimate=None):
        """Associate one frame's detections; returns its Poses with track ids.

        detections: Detections (scores below settings.low_score are ignored); estimate:
        Detections -> Poses (the pose network), called once for the confident boxes and once for
        the low-score boxes that matched a track, so no crop is spent on a box that is dropped;
        None tracks boxes only.
        """
        s = self.settings
        self.predict(timestamp)
        high = detections[detections.scores >= s.high_score]
        low = detections[(detections.scores >= s.low_score) & (detections.scores < s.high_score)]
        high_poses = self._estimate(estimate, high)
        pool = [t for t in self.tracks if t.state != TENTATIVE]
        pairs, free_tracks, free_high = assign(self._similarity(pool, high_poses), s.match_similarity)
        matched = [(pool[i], high_poses, j) for i, j in pairs]
        remaining = [pool[i] for i in free_tracks if pool[i].state == CONFIRMED]
        low_pairs, _, _ = assign(self._similarity(remaining, low, pose=False), s.low_match_iou)
        low_poses = self._estimate(estimate, low[low_pairs[:, 1]])
        matched += [(remaining[i], low_poses, n) for n, (i, _) in enumerate(low_pairs)]
        tentative = [t for t in self.tracks if t.state == TENTATIVE]
        left = high_poses.select(free_high)
        new_pairs, _, unborn = assign(self._similarity(tentative, left), s.tentative_similarity)
        matched += [(tentative[i], left, j) for i, j in new_pairs]
        return self._conclude(timestamp, matched, left.select(unborn))

    def carried_boxes(self, timestamp):
        """(Detections, tracks) for a frame without detection: each confirmed track's predicted box,
        or, where its last pose is usable, the extent of that pose moved with the prediction."""
        from livepose.stream.detect_every import boxes_from_poses

        self.predict(timestamp)
        tracks = self.active
        if not tracks:
            return Detections.empty(), []
        predicted = np.array([t.predicted_box for t in tracks])
        if self.settings.use_pose:
            moved = np.array([t.moved_keypoints() for t in tracks])
            predicted = boxes_from_poses(moved, np.array([t.scores for t in tracks]), predicted)
        return Detections(predicted, np.array([t.box_score for t in tracks])), tracks

    def follow(self, timestamp, tracks, poses):
        """Poses found in the boxes `carried_boxes` gave for `tracks` (same order); returns the
        frame's Poses with ids. Each box is measured again from its pose where the pose is usable."""
        from livepose.stream.detect_every import boxes_from_poses

        boxes = poses.boxes
        if self.settings.use_pose and len(poses):
            boxes = boxes_from_poses(poses.keypoints, poses.scores, poses.boxes)
        carried = Poses(poses.keypoints, poses.scores, boxes, poses.box_scores)
        return self._conclude(timestamp, [(track, carried, n) for n, track in enumerate(tracks)], None)

    def _estimate(self, estimate, detections):
        if estimate is not None and len(detections):
            return estimate(detections)
        k = self.num_keypoints
        return Poses(np.zeros((len(detections), k, 2)), np.zeros((len(detections), k)),
                     detections.boxes, detections.scores)

    def _similarity(self, tracks, candidates, pose=True):
        """(T, D) similarity of tracks to candidate Poses or Detections."""
        if not tracks or not len(candidates):
            return np.zeros((len(tracks), len(candidates)))
        means = np.array([t.mean for t in tracks])
        track_boxes = kalman.cxcywh_to_xyxy(means[:, :4])
        if not (pose and self.settings.use_pose and isinstance(candidates, Poses)):
            return similarity_matrix(track_boxes, candidates.boxes)
        moved = np.array([t.keypoints for t in tracks]) + (means[:, :2] - np.array([t.updated_center for t in tracks]))[:, None]
        track_pose = (moved, np.array([t.scores for t in tracks]))
        return similarity_matrix(track_boxes, candidates.boxes, track_pose, (candidates.keypoints, candidates.scores))

    def _conclude(self, timestamp, matched, newborn):
        """Apply one frame's matches [(track, Poses, index)], age the rest, start `newborn` Poses
        (None on frames without detection); returns the Poses of the confirmed tracks seen."""
        tracks = [track for track, _, _ in matched]
        raw = np.array([poses.keypoints[n] for _, poses, n in matched]) if matched else np.zeros((0, self.num_keypoints, 2))
        scores = np.array([poses.scores[n] for _, poses, n in matched]) if matched else np.zeros((0, self.num_keypoints))
        if matched:
            self._correct(matched)
        shown = smooth_keypoints(tracks, raw, scores, timestamp, self.settings.smoothing) \
            if self.settings.smooth and matched else raw
        records = []
        for m, (track, poses, n) in enumerate(matched):
            track.box, track.box_score = poses.boxes[n], float(poses.box_scores[n])
            track.keypoints, track.scores, track.last_seen = raw[m], scores[m], timestamp
            track.updated_center = track.mean[:2].copy()
            track.hits += 1
            if track.state == LOST or (track.state == TENTATIVE and track.hits >= self.settings.confirm_hits):
                self._confirm(track)
            if track.state == CONFIRMED:
                records.append((track.track_id, shown[m], track.scores, track.box, track.box_score))
        self._age(timestamp, {id(track) for track in tracks}, detected=newborn is not None)
        if newborn is not None:
            self._start(timestamp, newborn, records)
        self.frames += 1
        return self._poses(records)

    def _correct(self, matched):
        """Kalman update of the matched tracks with their measured boxes, in one batch."""
        tracks = [track for track, _, _ in matched]
        boxes = kalman.xyxy_to_cxcywh(np.array([poses.boxes[n] for _, poses, n in matched]))
        means, covariances = kalman.update(np.array([t.mean for t in tracks]),
                                           np.array([t.covariance for t in tracks]), boxes)
        for track, mean, covariance in zip(tracks, means, covariances):
            track.mean, track.covariance = mean, covariance

    def _confirm(self, track):
        if track.track_id == 0:
            track.track_id, self.next_id = self.next_id, self.next_id + 1
        track.state = CONFIRMED

    def _age(self, timestamp, seen, detected):
        """Unmatched tracks: tentative ones die on a detection frame, confirmed ones become lost,
        lost ones go after max_lost_seconds."""
        kept = []
        for track in self.tracks:
            if id(track) not in seen:
                if track.state == TENTATIVE and detected:
                    continue
                if track.state == CONFIRMED and detected:
                    track.state = LOST
                if track.state == LOST and timestamp - track.last_seen > self.settings.max_lost_seconds:
                    continue
            kept.append(track)
        self.tracks = kept

    def _start(self, timestamp, poses, records):
        """Tentative tracks for the unmatched confident Poses; on a run's first frame there is
        nothing to confirm against, so they are confirmed and reported at once (as ByteTrack does)."""
        born = [Track(poses.boxes[n], poses.box_scores[n], poses.keypoints[n], poses.scores[n], timestamp)
                for n in range(len(poses))]
        self.tracks.extend(born)
        if self.frames > 0 or not born:
            return
        shown = smooth_keypoints(born, poses.keypoints, poses.scores, timestamp, self.settings.smoothing) \
            if self.settings.smooth else poses.keypoints
        for track, keypoints in zip(born, shown):
            self._confirm(track)
            records.append((track.track_id, keypoints, track.scores, track.box, track.box_score))

    def _poses(self, records):
        records.sort(key=lambda record: record[0])
        if not records:
            return Poses(np.zeros((0, self.num_keypoints, 2)), np.zeros((0, self.num_keypoints)), np.zeros((0, 4)),
                         np.zeros(0), np.zeros(0, np.int64), self.settings.smooth)
        ids, keypoints, scores, boxes, box_scores = zip(*records)
        return Poses(np.stack(keypoints), np.stack(scores), np.stack(boxes), np.array(box_scores),
                     np.array(ids), self.settings.smooth)
