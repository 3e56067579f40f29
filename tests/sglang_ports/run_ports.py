"""Run every SGLang port in both forms on the demo model; one PASS/FAIL/SKIP line each.

python -m tests.sglang_ports.run_ports [--model DIR] [--only NAME]
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

import nanolang as nl
from tests.sglang_ports.ports import EXCLUDED, PORTS, Port


def run_one(port: Port, form: str) -> str | None:
    """None when the port passes, else why it fails (one line)."""
    try:
        port.check(port.drive(port.program(form)), form)
    except Exception as exc:  # every failure is reported, the others still run
        last = traceback.extract_tb(exc.__traceback__)[-1]
        message = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {message} ({last.filename.split('/')[-1]}:{last.lineno})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model directory (default: the demo model)")
    parser.add_argument("--only", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    from nanolang.backends.local import LocalBackend

    backend = LocalBackend.from_model(args.model)
    nl.set_backend(backend)
    failed = 0
    try:
        for port in PORTS:
            if args.only and port.name != args.only:
                continue
            for form in ("nano", "py"):
                problem = run_one(port, form)
                failed += problem is not None
                status = "PASS" if problem is None else "FAIL"
                print(f"{status} {port.name} [{form}]" + (f": {problem}" if problem else ""))
                sys.stdout.flush()
        for excluded in EXCLUDED:
            print(f"SKIP {excluded.name}: {excluded.reason}")
    finally:
        nl.set_backend(None)
        backend.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
