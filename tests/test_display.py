"""Display driver and screens: pixels on the simulated panel, bytes to a real SSD1306."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest
from luma.oled.device import ssd1306
from PIL import Image, ImageDraw

from edge.drivers.base import DriverError, UnknownBackend
from edge.drivers.config import DisplayConfig
from edge.drivers.display import (
    Display,
    DisplayBack,
    DisplayLost,
    LumaPanel,
    SimulatedPanel,
    blank,
    calibration_frame,
    make_panel,
)
from edge.drivers.display_text import STATUS_BAR_HEIGHT, Fonts, fit_text, has_cjk, wrap
from edge.feedback.screens import (
    ApprovedScreen,
    DeniedScreen,
    IdleScreen,
    OutOfServiceScreen,
    PinScreen,
    ServiceScreen,
    Status,
    TopUpScreen,
)

NOON = Status(online=True, now=datetime(2025, 3, 1, 12, 30))
OFFLINE = Status(online=False, now=datetime(2025, 3, 1, 12, 30))
LONG = (
    "Your card was reported lost on the 3rd. Please see the front desk with an identity "
    "document to get a replacement card issued."
)


def lit(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """How many pixels are on inside box (x0, y0, x1, y1), ends exclusive."""
    return image.crop(box).convert("L").histogram()[255]


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.convert("L").tobytes() == b.convert("L").tobytes()


class RecordingSerial:
    """A serial interface for luma that records what a real SSD1306 would be sent."""

    def __init__(self) -> None:
        self.commands: list[tuple[int, ...]] = []
        self.frames: list[bytes] = []
        self.cleaned_up = False

    def command(self, *cmd: int) -> None:
        self.commands.append(cmd)

    def data(self, data: list[int] | bytes) -> None:
        self.frames.append(bytes(data))

    def cleanup(self) -> None:
        self.cleaned_up = True


def test_real_ssd1306_gets_1024_data_bytes_per_frame() -> None:
    serial = RecordingSerial()
    panel = LumaPanel(DisplayConfig(backend="real"), serial_interface=serial)
    panel.open()
    assert any(0xAF in c for c in serial.commands)  # DISPLAYON was sent during set-up
    serial.frames.clear()
    frame = calibration_frame()
    panel.show(frame)
    assert sum(len(d) for d in serial.frames) == 1024
    # The bytes are the frame: page 0, column 0 has the border's top-left corner lit.
    assert serial.frames[0][0] & 0x01
    panel.close()
    assert serial.cleaned_up


def test_luma_ssd1306_class_is_the_one_the_real_backend_uses() -> None:
    serial = RecordingSerial()
    panel = LumaPanel(DisplayConfig(backend="real", controller="ssd1306"), serial_interface=serial)
    panel.open()
    assert isinstance(panel._device, ssd1306)


async def test_simulated_panel_saves_png_frames(tmp_path: Path) -> None:
    panel = SimulatedPanel(frames_dir=tmp_path / "frames")
    async with Display(panel) as display:
        assert await display.show(IdleScreen().render(NOON))
        assert await display.show(calibration_frame())
    assert [p.name for p in panel.saved] == ["frame-0001.png", "frame-0002.png"]
    saved = Image.open(panel.saved[1]).convert("1")
    assert same(saved, calibration_frame())


@pytest.mark.parametrize(
    "screen",
    [
        IdleScreen(),
        IdleScreen(lang="zh"),
        ApprovedScreen("Anna Lindqvist", "-¥12.00 swim", "¥88.00"),
        ApprovedScreen("王小明", "-1 次 游泳", "9 次", lang="zh"),
        DeniedScreen("Card reported lost"),
        DeniedScreen("卡已挂失，请到前台咨询", lang="zh"),
        TopUpScreen("¥15.00"),
        PinScreen(3),
        ServiceScreen(["kiosk-07 10.0.0.17", "queue 0", "selftest: pass"]),
        OutOfServiceScreen("Gate fault"),
    ],
    ids=lambda s: type(s).__name__ + "-" + getattr(s, "lang", ""),
)
def test_every_screen_draws_status_bar_and_content_in_128x64(screen: object) -> None:
    image = screen.render(NOON)  # type: ignore[attr-defined]
    assert image.size == (128, 64)
    assert image.mode == "1"
    assert lit(image, (0, 0, 128, STATUS_BAR_HEIGHT)) > 10  # icon, "online", clock
    assert lit(image, (0, STATUS_BAR_HEIGHT + 1, 128, 64)) > 30  # the screen's own content


def test_offline_status_bar_differs_from_online() -> None:
    on = IdleScreen().render(NOON).crop((0, 0, 128, STATUS_BAR_HEIGHT))
    off = IdleScreen().render(OFFLINE).crop((0, 0, 128, STATUS_BAR_HEIGHT))
    assert not same(on, off)


def test_approved_screen_puts_name_taken_and_left_in_their_rows() -> None:
    image = ApprovedScreen("Anna", "-¥12.00", "¥88.00").render(NOON)
    assert lit(image, (0, 12, 128, 26)) > 300  # inverse title bar with the name
    assert lit(image, (0, 28, 128, 44)) > 20  # what was taken
    assert lit(image, (0, 45, 128, 64)) > 20  # what is left


def test_pin_screen_masks_digits_as_filled_boxes() -> None:
    two = PinScreen(2).render(NOON)
    three = PinScreen(3).render(NOON)
    assert lit(three, (0, 28, 128, 64)) > lit(two, (0, 28, 128, 64))


def test_long_text_is_wrapped_and_shrunk_to_fit_its_box() -> None:
    image = blank()
    draw = ImageDraw.Draw(image)
    fitted = fit_text(draw, LONG, (0, 20, 128, 64))
    assert fitted.px < 16
    assert len(fitted.lines) > 1
    assert image.crop((0, 0, 128, 20)).getbbox() is None  # nothing above the box
    assert lit(image, (0, 20, 128, 64)) > 100


def test_text_that_cannot_fit_is_cut_with_an_ellipsis_inside_the_box() -> None:
    image = Image.new("1", (200, 100))
    draw = ImageDraw.Draw(image)
    fitted = fit_text(draw, LONG * 3, (10, 10, 138, 40))
    assert not fitted.complete
    assert fitted.lines[-1].endswith("…")
    bbox = image.getbbox()
    assert bbox is not None
    assert bbox[0] >= 10
    assert bbox[1] >= 10
    assert bbox[2] <= 138
    assert bbox[3] <= 40


def test_nothing_is_drawn_outside_128x64_for_any_screen_with_long_text() -> None:
    image = DeniedScreen(LONG * 2).render(NOON)
    big = Image.new("1", (160, 96))
    big.paste(image, (0, 0))
    assert big.crop((128, 0, 160, 96)).getbbox() is None
    fonts = Fonts()
    for line in wrap(LONG, fonts.font(16, LONG), 128):
        assert fonts.font(16, LONG).getlength(line, mode="1") <= 128


def test_cjk_glyphs_render_and_are_not_boxes() -> None:
    fonts = Fonts()
    assert fonts.has_cjk  # Debian fonts-unifont / xfonts-wqy are installed here
    a, b = blank(), blank()
    fit_text(ImageDraw.Draw(a), "余额", (0, 0, 128, 20), fonts=fonts)
    fit_text(ImageDraw.Draw(b), "充值", (0, 0, 128, 20), fonts=fonts)
    assert lit(a, (0, 0, 128, 20)) > 40
    # Two different characters look different: a missing-glyph box would be the same.
    assert not same(a, b)
    assert has_cjk("余额")
    assert not has_cjk("Balance")


def test_wrap_breaks_cjk_text_without_spaces() -> None:
    fonts = Fonts()
    lines = wrap("卡已挂失请到前台咨询卡已挂失请到前台咨询", fonts.font(16, "卡"), 128)
    assert len(lines) == 3
    assert "".join(lines) == "卡已挂失请到前台咨询卡已挂失请到前台咨询"


def test_without_cjk_fonts_latin_still_renders_and_a_clear_log_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    fonts = Fonts(candidates=[("/nonexistent/unifont.otf", 16)])
    assert not fonts.has_cjk
    assert "no CJK font found" in caplog.text
    image = IdleScreen().render(NOON, fonts)
    assert lit(image, (0, 20, 128, 64)) > 30


async def test_panel_lost_then_back_is_reported_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    panel = SimulatedPanel()
    now = [0.0]
    async with Display(panel, retry_initial_s=1.0, clock=lambda: now[0]) as display:
        events = display.events()
        panel.present = False
        assert not await display.show(IdleScreen().render(NOON))
        assert await anext(events) == DisplayLost("OSError: [Errno 121] Remote I/O error")
        panel.present = True
        assert not await display.show(calibration_frame())  # backoff: not retried yet
        now[0] = 5.0
        assert await display.show(calibration_frame())
        assert await anext(events) == DisplayBack()
    assert same(panel.image, calibration_frame())
    assert "display lost" in caplog.text


def test_backends_are_chosen_by_name() -> None:
    assert isinstance(make_panel("sim"), SimulatedPanel)
    assert isinstance(make_panel("real", DisplayConfig(backend="real")), LumaPanel)
    with pytest.raises(UnknownBackend):
        make_panel("hdmi")


def test_missing_i2c_bus_gives_a_fix() -> None:
    panel = LumaPanel(DisplayConfig(backend="real", i2c_port=77))
    with pytest.raises(DriverError, match="I2C bus 77") as err:
        panel.open()
    assert "wiring" in str(err.value) or "permission" in str(err.value)
