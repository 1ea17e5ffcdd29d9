"""Fuzz targets for every decoder of outside input (atheris; `pip install -e '.[fuzz]'`).

    python -m fuzz                        # list the targets
    python -m fuzz TARGET -runs=1000000   # one target, libFuzzer options after its name
    make fuzz                             # every target, 1,000,000 runs each

A target feeds arbitrary bytes to one decoder: the decoder's own refusal (its named error) is
the expected answer; any other exception is a crash, and libFuzzer stops with the input saved.
"""
