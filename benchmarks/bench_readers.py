"""Peak memory of every file reader per byte of a hostile input, each read by `unlearn` in a child process.

For each reader (results, audit, forget set, mask header, checkpoint header, memorization file) and each hostile shape
(one long string, a string of escapes, one wide character before a long string, strings of 64 KiB each after one,
deep nesting, many empty lists, many numbers, many short strings) a file of about --size MiB is
written and read by the command that reads it; the child's peak RSS (getrusage) less that of the same command on the
same shape at 1/64 of the size, divided by the bytes added, is the reader's memory per input byte. An address-space
cap (--cap-gb) keeps a reader that would take the machine down from doing so: it is reported as `> cap`.

Usage:
    .venv/bin/python benchmarks/bench_readers.py [--size 32] [--cap-gb 6] [--code DIR]   # DIR: another checkout to measure
    .venv/bin/python benchmarks/bench_readers.py --size 255 --readers results --shapes wide,wides   # near the 256 MiB limit
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 2**20
# shape -> JSON text of about `size` bytes
SHAPES = {
    "string": lambda size: b'"' + b"x" * size + b'"',
    "escapes": lambda size: b'"' + b"\\n" * (size // 2) + b'"',
    "wide": lambda size: '"😀'.encode() + b"x" * size + b'"',  # one character beyond 16 bits: the text is 4 bytes a character
    "wides": lambda size: b"[" + b",".join(['"😀'.encode() + b"x" * 2**16 + b'"'] * max(1, size // (2**16 + 7))) + b"]",
    "deep": lambda size: b"[" * (size // 2) + b"]" * (size // 2),
    "lists": lambda size: b"[" + b"[]," * (size // 3) + b"[]]",
    "numbers": lambda size: b"[" + b"1.5," * (size // 4) + b"1.5]",
    "words": lambda size: b"[" + b'"ab",' * (size // 5) + b'"ab"]',  # the most memory a value can take per byte
}


def _safetensors(metadata: dict, payload: bytes) -> bytes:
    header = b'{"__metadata__": ' + json.dumps(metadata).encode() + b', "pad": ' + payload + b"}"
    return struct.pack("<Q", len(header)) + header


def _json(document: dict, payload: bytes) -> bytes:
    text = json.dumps({**document, "pad": None}).encode()
    return text.replace(b'"pad": null', b'"pad": ' + payload)


# reader -> (file name, the file around a payload, the command that reads it (FILE, OUT placeholders))
READERS = {
    "results": ("r.json", lambda payload: _json({"format": "unlearn-results/1", "results": [{}]}, payload),
                ["report", "FILE"]),
    "audit": ("a.json", lambda payload: _json({"format": "unlearn-audit/1", "rows": []}, payload), ["report", "FILE"]),
    "forget set": ("f.json", lambda payload: b'{"format": "unlearn-forget/1", "indices": ' + payload + b"}",
                   ["train", "--dataset", "digits", "--arch", "mlp", "--exclude", "FILE", "-q", "-o", "OUT"]),
    "mask header": ("m.safetensors", lambda payload: _safetensors({"format": "unlearn-mask/1"}, payload),
                    ["mask", "info", "FILE"]),
    "checkpoint header": ("c.safetensors", lambda payload: _safetensors({"format": "unlearn-checkpoint/1"}, payload),
                          ["info", "FILE"]),
    "memorization": ("z.json", lambda payload: _json({"format": "unlearn-memorization/1", "num_train": 1}, payload),
                     ["split", "--dataset", "digits", "--kind", "memorization", "--level", "high", "--model", "FILE",
                      "-q", "-o", "OUT"]),
}


def hostile_file(reader: str, shape: str, size: int, folder: Path) -> tuple[Path, list[str]]:
    """The hostile file of `reader` with payload `shape` of about `size` bytes, and the command line that reads it."""
    name, wrap, command = READERS[reader]
    path = folder / f"{shape}-{size}-{name}"
    path.write_bytes(wrap(SHAPES[shape](size)))
    return path, [str(path) if part == "FILE" else str(folder / "never-written") if part == "OUT" else part
                  for part in command]


def run_child(arguments: list[str], code: str, cap: int) -> tuple[int, int, str]:
    """(exit status or -signal, peak RSS in bytes, last stderr line) of `unlearn ARGS` in a child capped at `cap`."""
    environment = {**os.environ, "PYTHONPATH": code, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.Popen([sys.executable, "-m", "unlearn_cli", *arguments], env=environment, cwd=code,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    error = child.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    lines = error.strip().splitlines()
    return child.returncode, usage.ru_maxrss * 1024, (lines[-1] if lines else "")[:100]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=32, help="MiB of each hostile file")
    parser.add_argument("--cap-gb", type=float, default=6.0, help="address-space cap of each child")
    parser.add_argument("--code", default=str(Path(__file__).resolve().parents[1]), help="checkout whose unlearn_cli runs")
    parser.add_argument("--readers", default=",".join(READERS), help="comma-separated, of: " + ", ".join(READERS))
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, of: " + ", ".join(SHAPES))
    options = parser.parse_args()
    cap = int(options.cap_gb * 2**30)
    print(f"code {options.code}; files of {options.size} MiB; peak RSS less the same command at 1/64 of the size")
    print(f"{'reader':18} {'shape':8} {'exit':>4} {'peak MiB':>9} {'bytes/byte':>10}  message")
    with tempfile.TemporaryDirectory() as folder:
        for reader in options.readers.split(","):
            for shape in options.shapes.split(","):
                small, small_arguments = hostile_file(reader, shape, options.size * MiB // 64, Path(folder))
                _, base, _ = run_child(small_arguments, options.code, cap)
                path, arguments = hostile_file(reader, shape, options.size * MiB, Path(folder))
                status, peak, message = run_child(arguments, options.code, cap)
                added = path.stat().st_size - small.stat().st_size
                per_byte = "> cap" if status < 0 or "MemoryError" in message else f"{(peak - base) / added:.2f}"
                print(f"{reader:18} {shape:8} {status:>4} {peak / MiB:>9.0f} {per_byte:>10}  {message}", flush=True)
                path.unlink()
                small.unlink()


if __name__ == "__main__":
    main()
