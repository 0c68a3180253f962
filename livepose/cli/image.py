"""`livepose image FILES/FOLDERS --out DIR`: annotated copies and COCO keypoint results."""
import sys
from contextlib import ExitStack
from pathlib import Path

from livepose.cli.common import add_model_arguments, check_thresholds, load_models

NAME = "image"
HELP = "annotate images; write COCO keypoint results"
DESCRIPTION = "Annotate images (files or folders of images) and write COCO keypoint results."


def add_arguments(parser):
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the annotated copies (created if missing) and coco_results.json")
    parser.add_argument("--coco", type=Path, metavar="F.json", help="COCO results file (default: DIR/coco_results.json)")
    add_model_arguments(parser)


def run(args):
    from tqdm import tqdm

    from livepose.stream.sinks import AnnotatedImageWriter, CocoResultsWriter
    from livepose.stream.sources import list_images

    check_thresholds(args)
    paths = list_images(args.inputs)
    annotated = AnnotatedImageWriter(args.out, paths)
    coco = CocoResultsWriter(args.coco or Path(args.out) / "coco_results.json")
    estimator, models_used = load_models(args)
    with ExitStack() as stack:
        stack.callback(estimator.detector.close)
        stack.callback(estimator.close)
        counts = [_annotate_image(estimator, args, path, position, annotated, coco) for position, path in
                  enumerate(tqdm(paths, unit="image", disable=len(paths) < 2, file=sys.stderr))]
    coco.close()
    print(f"livepose: {len(paths)} images, {sum(counts)} persons; annotated copies in {annotated.folder}/, "
          f"COCO results in {coco.path}; {models_used}", file=sys.stderr)
    return 0


def _annotate_image(estimator, args, path, position, annotated, coco):
    """Estimate the poses of one image file, write its annotated copy, add its COCO results."""
    from livepose.stream.draw import draw_poses
    from livepose.stream.sinks import coco_image_id
    from livepose.stream.sources import read_image

    image = read_image(path)
    poses = estimator.estimate(image)
    annotated.write(path, draw_poses(image, poses, threshold=args.kpt_threshold, boxes=not args.no_boxes))
    coco.add(coco_image_id(path, position), poses, file_name=Path(path).name)
    return len(poses)
