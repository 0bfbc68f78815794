"""Start-up cost of the `unlearn` command: wall time and peak memory of a fresh process per command.

The commands that do no training (`--help` of every command, `report`, `info`, `mask info`) should start in well
under half a second: they need no torch. Each command is run `--runs` times in a fresh `python -m unlearn_cli`; the
median wall time and the median peak RSS of the child are printed. The input files (a tiny checkpoint, a mask and a
results file) are made once in a temporary folder, before any timing.

Usage:
    python benchmarks/bench_startup.py [--runs 5] [--source PATH]    # PATH: the checkout to time (default: this one)

Target: under 0.5 s on 2 cores for every command listed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ["split", "train", "localize", "apply", "calibrate", "mask", "evaluate", "audit", "report", "tune", "info",
            "demo"]


def run_once(arguments: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `python -m unlearn_cli ARGUMENTS`."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "unlearn_cli", *arguments], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"unlearn {' '.join(arguments)} exited {child.returncode}")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def make_inputs(folder: Path, env: dict) -> dict[str, str]:
    """A tiny checkpoint, a mask of it and a results file with one record, made with the command itself."""
    def unlearn(*arguments: str) -> None:
        made = subprocess.run([sys.executable, "-m", "unlearn_cli", *arguments], env=env, capture_output=True, text=True)
        if made.returncode != 0:
            raise SystemExit(f"unlearn {' '.join(arguments)}: {made.stderr.strip()}")

    model, forget, mask = folder / "model.safetensors", folder / "forget.json", folder / "mask.safetensors"
    unlearned, results = folder / "unlearned.safetensors", folder / "results.json"
    unlearn("train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "--seed", "0", "-o", str(model), "-q")
    unlearn("split", "--dataset", "digits", "--kind", "iid", "--fraction", "0.05", "--seed", "0", "-o", str(forget), "-q")
    unlearn("localize", "--model", str(model), "--forget", str(forget), "--budget", "0.3", "-o", str(mask), "-q")
    unlearn("apply", "--model", str(model), "--forget", str(forget), "--mask", str(mask), "--epochs", "1",
            "-o", str(unlearned), "-q")
    unlearn("evaluate", str(unlearned), "--parent", str(model), "--forget", str(forget), "--json", str(results), "-q")
    return {"model": str(model), "mask": str(mask), "results": str(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source", default=str(Path(__file__).resolve().parent.parent),
                        help="checkout whose unlearn_cli is timed")
    arguments = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": arguments.source, "OMP_NUM_THREADS": "1", "COLUMNS": "80"}
    with tempfile.TemporaryDirectory() as folder:
        files = make_inputs(Path(folder), env)
        training = ["train", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "-o", os.devnull, "-q"]
        cases = [("--help", ["--help"]), *((f"{command} --help", [command, "--help"]) for command in COMMANDS),
                 ("report FILE", ["report", files["results"]]), ("info FILE", ["info", files["model"]]),
                 ("mask info FILE", ["mask", "info", files["mask"]]),
                 ("train (1 epoch, the torch import paid once)", training)]
        rows = []
        for label, case in cases:
            timings = [run_once(case, env) for _ in range(arguments.runs)]
            wall = statistics.median(t for t, _ in timings)
            rss = statistics.median(m for _, m in timings)
            rows.append({"command": f"unlearn {label}", "wall_s": round(wall, 3), "peak_rss_mib": round(rss, 1)})
            print(f"{'unlearn ' + label:<60} {wall:6.3f} s {rss:8.1f} MiB", flush=True)
    print(json.dumps({"source": arguments.source, "runs": arguments.runs, "rows": rows}))


if __name__ == "__main__":
    main()
