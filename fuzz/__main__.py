"""`python -m fuzz TARGET [libFuzzer options]`: one target, seeded from fuzz/corpus/TARGET."""

from __future__ import annotations

import sys
from pathlib import Path

NAMES = (
    "envelope",
    "body",
    "ops",
    "enroll_request",
    "enroll_answer",
    "bundle",
    "wedge_text",
    "kiosk_config",
)
HERE = Path(__file__).parent
WORK = Path("fuzz-out")  # what the fuzzer finds is kept here, never in the committed seeds


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        print("usage: python -m fuzz TARGET [-runs=N ...]; targets: " + " ".join(NAMES))
        return 2
    name, options = sys.argv[1], sys.argv[2:]
    try:
        import atheris
    except ImportError:
        print("error: atheris is not installed; run: .venv/bin/pip install -e '.[fuzz]'")
        return 1
    from fuzz.targets import TARGETS

    # Every Python function loaded so far (ours, msgspec's Python layer, tomllib,
    # json, base64...) reports its branches: the feedback that guides mutations. The decoders'
    # C cores give none, so the targets also exercise what a receiver does next.
    atheris.instrument_all()
    corpora: list[str] = []
    if not any(not o.startswith("-") for o in options):
        work = WORK / name
        work.mkdir(parents=True, exist_ok=True)
        corpora = [str(work), str(HERE / "corpus" / name)]
    if not any(o.startswith("-max_len=") for o in options):
        options.append("-max_len=16384")
    atheris.Setup([sys.argv[0], *options, *corpora], TARGETS[name])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
