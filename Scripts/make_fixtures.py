#!/usr/bin/env python3
"""Regenerates the committed test fixtures from PyTorch / diffusers / transformers (DESIGN.md §7).

Usage: python Scripts/make_fixtures.py AREA [options]
AREA is one of: ops, tokenizer, models, schedulers, pipeline, png, resample, full-size.
Each area lives in Scripts/fixtures/<area>.py and writes only Tests/Fixtures/<area>/
(full-size writes a large random SSD-1B folder wherever --out says; never inside the repo).
Install the pinned versions first: pip install -r Scripts/requirements.txt
"""
import argparse
import importlib
import os
import sys

AREAS = ["ops", "tokenizer", "models", "schedulers", "pipeline", "png", "resample", "full-size"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("area", choices=AREAS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options for the area")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    module = importlib.import_module("fixtures." + args.area.replace("-", "_"))
    default_out = os.path.join(ROOT, "Tests", "Fixtures", args.area)
    module.run(default_out, args.rest)


if __name__ == "__main__":
    main()
