"""Standard tracking outputs as stream sinks: MOTChallenge box tracks and PoseTrack18 JSON.

Both go through the commit protocol (livepose.files) with the run's video and JSON lines: a
temporary beside the target, renamed over it when the stream ends (also after Ctrl-C, with every
frame processed so far); a run that fails leaves any previous file of that name untouched.
"""
import json
from pathlib import Path

import numpy as np

from livepose.files import (
    CommittedOutput,
    StagedFile,
    check_writable,
    close_quietly,
    commit_outputs,
    write_failure,
)

# PoseTrack18's 17 slots in COCO order: eyes become head_bottom / head_top, ears are unlabelled
POSETRACK18_KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
POSETRACK18_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                        (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))
# the eyes sit about halfway up the head, and the neck's top halfway between the shoulders' centre
# and the nose: head_top mirrors head_bottom about the eyes (ears when the eyes are unsure)
EYE_SCORE = 0.3


class _CommittedFile(CommittedOutput):
    """A text output through the commit protocol (files.StagedFile): written to a temporary beside
    `path`, committed with the run's other outputs (files.commit_outputs), or alone by close()."""

    output, stage = True, "write"  # a stream sink holding a file (see stream.run)

    def __init__(self, path, what):
        self.path, self.what = Path(path), what
        check_writable(self.path, what)
        self.staged = StagedFile(self.path, what)
        self.frames_written = 0
        try:
            self._handle = open(self.staged.temporary, "w", encoding="utf-8")
        except OSError as error:
            raise write_failure(what, self.path, error) from None

    @property
    def empty(self):
        return self.frames_written == 0

    def _write_rest(self):
        """Write what is held back until the end (nothing here)."""

    def finish(self):
        """Write the rest, close and fsync the temporary (commit protocol step 2)."""
        handle = self._handle
        if handle is None:
            return
        try:
            self._write_rest()
            handle.close()
        except OSError as error:
            raise write_failure(self.what, self.path, error) from None
        finally:
            self._handle = None
        self.staged.sync()

    def abandon(self):
        if self._handle is not None:
            handle, self._handle = self._handle, None
            close_quietly(handle)

    def close(self):
        """Commit the file alone (idempotent)."""
        if self._handle is not None:
            commit_outputs([self])


class MotWriter(_CommittedFile):
    """MOTChallenge results: `frame,id,x,y,w,h,score,-1,-1,-1` per tracked person and frame,
    frames counted from 1 and, as in MOTChallenge's files, pixels too (the top-left pixel is
    (1, 1): py-motmetrics subtracts 1 on loading), so TrackEval and the MOT devkit read it."""

    def __init__(self, path):
        super().__init__(path, "MOT output")

    def __call__(self, result):
        self.write(result.frame.index, result.poses)

    def write(self, index, poses):
        if poses.track_ids is None:
            raise ValueError("MOT output: the poses carry no track ids (run the tracker)")
        self.frames_written += 1
        for track_id, (x1, y1, x2, y2), score in zip(poses.track_ids, poses.boxes, poses.box_scores):
            self._handle.write(f"{index + 1},{track_id},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                               f"{score:.4f},-1,-1,-1\n")


def posetrack_keypoints(keypoints, scores):
    """COCO (17, 2) keypoints and (17,) scores -> PoseTrack18's (17, 2) and (17,) in its slots.

    head_bottom (slot 1) = midway between the nose and the shoulders' centre (the neck's top);
    head_top (slot 2) = head_bottom mirrored about the eyes' centre (ears' when the eyes score
    below 0.3); the ears' slots are written as unlabelled (0, 0, score 0), as PoseTrack has none.
    """
    out, out_scores = keypoints.astype(np.float64).copy(), scores.astype(np.float64).copy()
    neck = (keypoints[5] + keypoints[6]) / 2
    out[1] = (keypoints[0] + neck) / 2
    out_scores[1] = min(scores[0], scores[5], scores[6])
    eyes = (1, 2) if min(scores[1], scores[2]) >= EYE_SCORE or min(scores[3], scores[4]) < EYE_SCORE else (3, 4)
    middle = (keypoints[eyes[0]] + keypoints[eyes[1]]) / 2
    out[2] = 2 * middle - out[1]
    out_scores[2] = min(scores[eyes[0]], scores[eyes[1]], out_scores[1])
    out[3:5], out_scores[3:5] = 0.0, 0.0
    return out, out_scores


class PoseTrackWriter(_CommittedFile):
    """PoseTrack18 JSON (images, annotations with track_id, keypoints and scores, categories) of
    one video, written whole when the stream ends; `file_name` of frame i is VIDEO/000i.jpg."""

    def __init__(self, path, video_name="video"):
        super().__init__(path, "PoseTrack output")
        self.video_name = str(video_name)
        self.images, self.annotations = [], []
        self.smoothed = None

    def __call__(self, result):
        self.write(result.frame.index, result.poses)

    def write(self, index, poses):
        if poses.track_ids is None:
            raise ValueError("PoseTrack output: the poses carry no track ids (run the tracker)")
        self.frames_written += 1
        image_id = index + 1
        self.smoothed = bool(poses.smoothed) if self.smoothed is None else self.smoothed or bool(poses.smoothed)
        self.images.append({"file_name": f"{self.video_name}/{index:06d}.jpg", "id": image_id, "frame_id": image_id,
                            "vid_id": self.video_name, "is_labeled": True})
        for track_id, keypoints, scores, (x1, y1, x2, y2) in zip(poses.track_ids, poses.keypoints, poses.scores, poses.boxes):
            points, point_scores = posetrack_keypoints(keypoints, scores)
            flat = np.concatenate([points, (point_scores > 0)[:, None]], axis=1).ravel()
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "track_id": int(track_id), "category_id": 1,
                "keypoints": [round(float(v), 2) for v in flat], "scores": [round(float(v), 4) for v in point_scores],
                "bbox": [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            })

    def _write_rest(self):
        for image in self.images:
            image["nframes"] = len(self.images)
        document = {
            "images": self.images, "annotations": self.annotations,
            "categories": [{"supercategory": "person", "id": 1, "name": "person", "keypoints": list(POSETRACK18_KEYPOINTS),
                            "skeleton": [list(edge) for edge in POSETRACK18_SKELETON]}],
            "livepose": {"smoothed": bool(self.smoothed), "keypoints_from": "COCO-17, see posetrack_keypoints"},
        }
        json.dump(document, self._handle, separators=(",", ":"))
