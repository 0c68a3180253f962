"""`livepose image FILES/FOLDERS --out DIR`: annotated copies and COCO keypoint results."""
import sys
import warnings
from contextlib import ExitStack
from pathlib import Path

from livepose.cli.common import Interrupted, add_model_arguments, check_thresholds, load_models, naming_detector
from livepose.files import MediaError

NAME = "image"
HELP = "annotate images; write COCO keypoint results"
DESCRIPTION = ("Annotate images (files or folders of images) and write COCO keypoint results. An image that cannot "
               "be read is skipped with a warning and listed at the end (--strict stops at it); the results of "
               "the images done are written also when the run stops early (an error, Ctrl-C, SIGTERM).")


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the annotated copies and coco_results.json (created if missing; "
                             "its parent must exist)")
    parser.add_argument("--coco", type=Path, metavar="F.json", help="COCO results file (default: DIR/coco_results.json)")
    parser.add_argument("--strict", action="store_true", help="stop at the first image that cannot be read")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def run(args):
    from livepose.stream.sinks import AnnotatedImageWriter, CocoResultsWriter, ProgressBar
    from livepose.stream.sources import list_images

    check_thresholds(args)
    paths = list_images(args.inputs)
    annotated = AnnotatedImageWriter(args.out, paths)
    coco = CocoResultsWriter(args.coco or Path(args.out) / "coco_results.json")
    estimator, models_used = load_models(args)
    progress = {"done": 0, "persons": 0, "skipped": []}
    with ExitStack() as stack:
        stack.callback(estimator.detector.close)
        stack.callback(estimator.close)
        bar = stack.enter_context(ProgressBar(len(paths), "images", enabled=not args.no_progress and len(paths) > 1,
                                              unit="image"))
        try:
            with naming_detector(estimator):
                _annotate_all(estimator, args, paths, annotated, coco, progress, bar)
        except KeyboardInterrupt:
            _keep_results(coco, progress)
            raise Interrupted(f"after {progress['done']} of {len(paths)} images; {_written(coco, annotated, progress)}") from None
        except BaseException:
            _keep_results(coco, progress)
            raise
    if not progress["done"]:
        raise MediaError(f"images: none of the {len(paths)} could be read ({', '.join(progress['skipped'])})")
    coco.close()
    print(f"livepose: {progress['done']} of {len(paths)} images, {progress['persons']} persons; "
          f"{_written(coco, annotated, progress)}; {models_used}", file=sys.stderr)
    return 0


def _keep_results(coco, progress):
    """The results of the images done, written when the run stops early (none done: an earlier
    results file stays)."""
    if progress["done"]:
        coco.close()


def _annotate_all(estimator, args, paths, annotated, coco, progress, bar):
    """Every image in turn; one that cannot be read is skipped with a warning (raised with
    --strict, or when it is the only one)."""
    from livepose.stream.sources import read_image

    for position, path in enumerate(paths):
        try:
            image = read_image(path)
        except MediaError as error:
            if args.strict or len(paths) == 1:
                raise
            warnings.warn(f"{error}; skipped (--strict stops at it)")
            progress["skipped"].append(str(path))
            continue
        progress["persons"] += _annotate_image(estimator, args, image, path, position, annotated, coco)
        progress["done"] += 1
        bar(None)


def _annotate_image(estimator, args, image, path, position, annotated, coco):
    """Estimate the poses of one image, write its annotated copy, add its COCO results."""
    from livepose.stream.draw import draw_poses
    from livepose.stream.sinks import coco_image_id

    poses = estimator.estimate(image)
    annotated.write(path, draw_poses(image, poses, threshold=args.kpt_threshold, boxes=not args.no_boxes))
    coco.add(coco_image_id(path, position), poses, file_name=Path(path).name)
    return len(poses)


def _written(coco, annotated, progress):
    skipped = progress["skipped"]
    if not progress["done"]:
        return "nothing written"
    text = f"annotated copies in {annotated.folder}/, COCO results of {progress['done']} images in {coco.path}"
    if skipped:
        text += f"; {len(skipped)} skipped (unreadable): {', '.join(skipped)}"
    return text
