"""OpenCV's FFmpeg reader against PyAV (FFmpeg's own bindings): what each reports and how fast.

For issue 13 item 6 (a mid-stream resolution change). Prints, per video and reader: frames
decoded, decode fps, the distinct frame sizes seen, the size the container/stream reports, the
frame count it announces, the first and last timestamps and the rotation it reports.

    python benchmarks/video_readers.py [VIDEO ...]     (default: the shared videos and a generated
                                                        15 x 640x272 + 15 x 320x240 MJPEG stream)
PyAV is not a livepose dependency: pip install av to run its half.
"""
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def resolution_change_stream(folder):
    path = Path(folder) / "change_640x272_to_320x240.mjpeg"
    with open(path, "wb") as handle:
        for height, width in [(272, 640)] * 15 + [(240, 320)] * 15:
            handle.write(cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes())
    return path


def read_opencv(path):
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    announced = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    reported = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    rotation = capture.get(cv2.CAP_PROP_ORIENTATION_META)
    sizes, stamps, start = set(), [], time.perf_counter()
    while True:
        ok, image = capture.read()
        if not ok:
            break
        sizes.add(image.shape[:2])
        stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    seconds = time.perf_counter() - start
    capture.release()
    return dict(frames=len(stamps), fps=len(stamps) / seconds, sizes=sorted(sizes), reported=reported,
                announced=int(announced) if announced > 0 else None, stamps=(stamps[:1] + stamps[-1:]), rotation=rotation)


def read_pyav(path):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        reported = (stream.codec_context.height, stream.codec_context.width)
        sizes, stamps, start = set(), [], time.perf_counter()
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="bgr24")
            sizes.add(image.shape[:2])
            stamps.append(float(frame.time) if frame.time is not None else None)
        seconds = time.perf_counter() - start
        rotation = getattr(frame, "rotation", None) if stamps else None
        announced = stream.frames or None
    return dict(frames=len(stamps), fps=len(stamps) / seconds, sizes=sorted(sizes), reported=reported,
                announced=announced, stamps=(stamps[:1] + stamps[-1:]), rotation=rotation)


def main(paths):
    with tempfile.TemporaryDirectory() as scratch:
        paths = paths or [*sorted(SHARED.glob("*")), resolution_change_stream(scratch)]
        for path in paths:
            for name, reader in (("opencv", read_opencv), ("pyav", read_pyav)):
                try:
                    found = reader(path)
                except ImportError:
                    print(f"{Path(path).name:40s} {name:6s} (not installed)")
                    continue
                print(f"{Path(path).name:40s} {name:6s} frames {found['frames']:4d} ({found['fps']:6.0f} fps) "
                      f"sizes {found['sizes']} reported {found['reported']} announced {found['announced']} "
                      f"t {found['stamps']} rotation {found['rotation']}")


if __name__ == "__main__":
    main(sys.argv[1:])
