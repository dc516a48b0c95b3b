"""`python -m sv4d_kit.golden DIR`: run every golden set in DIR; exit 0 only if every case passes."""

import argparse
import sys
import traceback
from pathlib import Path

from sv4d_kit.golden import CaseResult, discover, run_set


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sv4d_kit.golden", description=__doc__)
    parser.add_argument("folder", help="a folder of golden sets (the format of shared/reference/)")
    parser.add_argument("-k", "--only", default=None, help="run only sets whose name contains this text")
    args = parser.parse_args(argv)
    try:
        sets = discover(args.folder)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.only:
        sets = [s for s in sets if args.only in s.name]
    if not sets:
        print(
            f"error: no golden sets (golden_*.json with .safetensors, *_checkpoint_layout.json) in {args.folder}",
            file=sys.stderr,
        )
        return 2
    n_pass = n_fail = 0
    for gset in sets:
        try:
            results = list(run_set(gset, Path(args.folder)))
        except Exception as e:  # a crash in one set is a failure of that set, not of the runner
            detail = f"{type(e).__name__}: {e}".replace("\n", " ")
            results = [CaseResult(f"{gset.name}", False, float("nan"), f"crashed: {detail}")]
            traceback.print_exc(file=sys.stderr)
        for r in results:
            r.name = r.name if r.name.startswith(gset.name) else f"{gset.name}/{r.name}"
            print(r.line(), flush=True)
            n_pass += r.passed
            n_fail += not r.passed
    print(f"{n_pass} passed, {n_fail} failed", flush=True)
    return 0 if n_fail == 0 and n_pass > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
