"""`python -m train import`: published pose weights -> a livepose checkpoint (work in progress)."""
import sys

LAYOUTS = ("mmpose", "msra", "paddle-legacy")


def add_arguments(parser):
    parser.add_argument("layout", choices=LAYOUTS)
    parser.add_argument("source")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)


def run(args):
    print("import: not implemented yet", file=sys.stderr)
    return 2
