"""Start-up time of the hwnas command: `hwnas --help` and each subcommand's --help, median of repeated runs.

Prints one JSON object: seconds per command (median), and which heavy libraries each one imported.
    python benchmarks/cli_startup.py --repeats 5
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HWNAS = str(Path(sys.executable).parent / "hwnas")
HEAVY = ("lightning", "aihwkit", "monai", "botorch", "timm", "xgboost", "wandb")
PROBE = (
    "import sys, runpy; sys.argv = ['hwnas', *{args!r}]\n"
    "try:\n    runpy.run_module('hwnas_pl', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    "print('MODULES', ' '.join(sorted({{m.split('.')[0] for m in sys.modules}})), file=sys.stderr)"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = {}
    for command in (["--help"], ["fit", "--help"], ["search", "--help"], ["bench", "lut", "--help"]):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([HWNAS, *command], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        probe = subprocess.run([sys.executable, "-c", PROBE.format(args=command)], capture_output=True, text=True)
        loaded = probe.stderr.rsplit("MODULES", 1)[-1].split()
        key = "hwnas " + " ".join(command)
        result[key] = {
            "seconds_median": round(statistics.median(times), 3),
            "heavy_imports": [m for m in HEAVY if m in loaded],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
