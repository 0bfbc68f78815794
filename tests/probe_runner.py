"""Run many `unlearn` command lines in one child process whose memory is capped, for the hostile-input tests.

The child imports torch and the app once (torch alone reserves about 3 GB of address space), then caps
its address space at what it holds plus `--headroom` bytes (RLIMIT_AS), so any probe that tries to
allocate more fails. Each probe runs in-process under an alarm; the results go to stdout as JSON.

Usage (as the tests do):
    python tests/probe_runner.py --headroom 2147483648 < probes.json > results.json
    probes.json: [{"id": "...", "args": ["info", "x.safetensors"], "stdin": null, "env": {}, "timeout": 60}, ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import signal
import sys
import time


class ProbeTimeout(BaseException):
    pass


def _alarm(signal_number, frame):
    raise ProbeTimeout


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--headroom", type=int, default=2 * 1024**3)
    options = parser.parse_args()
    probes = json.load(sys.stdin)

    import torch  # noqa: F401  (imported before the cap: its address space is not the probes')
    from typer.testing import CliRunner

    from unlearn_cli.cli.app import app

    torch.set_num_threads(1)
    torch.cuda.is_available()  # device discovery too, before the cap (the tests hide GPUs: a CUDA context would not fit)
    CliRunner().invoke(app, ["--help"])  # warm up: lazy imports happen before the cap too
    cap = _address_space() + options.headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, _alarm)
    results = {}
    for probe in probes:
        started = time.perf_counter()
        signal.alarm(probe.get("timeout", 60))
        try:
            stdin = probe.get("stdin")
            result = CliRunner().invoke(app, probe["args"], input=None if stdin is None else bytes.fromhex(stdin),
                                        env=probe.get("env") or None)
            outcome = {"exit_code": result.exit_code, "stderr": result.stderr, "stdout_bytes": len(result.stdout_bytes),
                       "exception": None if result.exception is None or isinstance(result.exception, SystemExit)
                       else f"{type(result.exception).__name__}: {result.exception}"}
            del result  # its exception's context holds the frames of the probe, and so what it read
        except ProbeTimeout:
            outcome = {"exit_code": None, "stderr": "", "stdout_bytes": 0, "exception": "timed out"}
        finally:
            signal.alarm(0)
            gc.collect()  # each probe starts with what the ones before it freed
        outcome["seconds"] = time.perf_counter() - started
        results[probe["id"]] = outcome
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
