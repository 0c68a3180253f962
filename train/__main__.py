"""`livepose-train` / `python -m train`: fit, evaluate, export and import SimpleBaselines pose models."""
import argparse
import importlib
import os
import sys

if not __package__:  # run as a script (paddle.distributed.launch takes a file): import `train` from the repo
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# subcommand -> module; each module defines add_arguments(parser) and run(args) -> exit code
_COMMANDS = {
    "fit": ("fit", "train a pose model on COCO-format keypoints"),
    "evaluate": ("evaluate", "COCO OKS AP of a checkpoint, an ONNX model or the ground-truth oracle"),
    "export": ("export", "export a checkpoint (or random weights) to ONNX with livepose metadata"),
    "import": ("importers", "convert published weights (mmpose, msra, paddle-legacy) to a checkpoint"),
}


def _package():
    return __package__ or "train"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="livepose-train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for command, (module_name, help_text) in _COMMANDS.items():
        module = importlib.import_module(f"{_package()}.{module_name}")
        modules[command] = module
        module.add_arguments(sub.add_parser(command, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
