"""`python -m fuzz TARGET [libFuzzer options]`: run one atheris target (see fuzz/__init__.py)."""

from __future__ import annotations

import sys

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


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        print("usage: python -m fuzz TARGET [-runs=N ...]; targets: " + " ".join(NAMES))
        return 2
    try:
        import atheris
    except ImportError:
        print("error: atheris is not installed; run: .venv/bin/pip install -e '.[fuzz]'")
        return 1
    # Coverage feedback from our own packages (the libraries run uninstrumented, and fast).
    with atheris.instrument_imports(include=["cloud_sync", "edge", "provisioning"]):
        from fuzz.targets import TARGETS
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[sys.argv[1]])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
