"""`python -m bench [MESSAGES] [NAME] [--quick]` (the same as `wastegate bench`)."""

import signal
import sys

from bench.run import run


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the temporary broker and database are removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    numbers = [arg for arg in sys.argv[1:] if arg.isdigit()]
    names = [arg for arg in sys.argv[1:] if not arg.isdigit() and not arg.startswith("--")]
    run(int(numbers[0]) if numbers else 100_000, names[0] if names else "latest", quick="--quick" in sys.argv)
