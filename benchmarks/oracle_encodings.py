"""Oracle COCO AP of the two target encodings side by side, at 256x192 and 384x288, in one run.

    python benchmarks/oracle_encodings.py [--ann F --images DIR]

No network: the ground truth rendered as each encoding's training targets, decoded the way the
runtime decodes that encoding (standard: quarter shift, unbiased: DARK), warped back and scored by
pycocotools. What is left below AP 1 is what the encoding itself loses. Also with --flip.
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
COCO = REPO.parent / "shared" / "data" / "coco" / "coco_train2017_subset"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", default=COCO / "person_keypoints.json")
    parser.add_argument("--images", default=COCO / "images")
    parser.add_argument("--flip", action="store_true", help="also average with the mirrored crops")
    args = parser.parse_args(argv)
    from train.evaluate import EvalSettings, evaluate_oracle
    from train.model import get_config

    print(f"{'config':12s} {'standard AP':>12s} {'unbiased AP':>12s}")
    for name in ("r50-256x192", "r50-384x288"):
        config = get_config(name)
        row = [evaluate_oracle(config, args.ann, args.images, EvalSettings(flip=args.flip), encoding)["AP"]
               for encoding in ("standard", "unbiased")]
        print(f"{name:12s} {row[0]:12.4f} {row[1]:12.4f}")


if __name__ == "__main__":
    main()
