"""The drivers demo plays its script on the simulated parts and leaves PNG frames."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from kiosk.demo.drivers import drivers_demo


async def test_drivers_demo_writes_frames_and_tells_what_happened(tmp_path: Path) -> None:
    lines = await drivers_demo(tmp_path / "frames")
    text = "\n".join(lines)
    for step in ("Swiped", "Scanned", "CouldNotRead", "BankCardRefused", "QrPayload", "Passage"):
        assert step in text
    assert "500 fen" in text
    # no card number of the script appears in what the demo tells
    assert "6012345678" not in text
    assert "4111111111111111" not in text
    frames = sorted((tmp_path / "frames").glob("frame-*.png"))
    assert len(frames) == 8
    for frame in frames:
        image = Image.open(frame)
        assert image.size == (128, 64)
        assert image.convert("L").getbbox() is not None  # something is drawn on every frame
