"""What a member reads, in English and 简体中文: one catalog with no string left untranslated,
every string drawn whole at 128x64 with a glyph for each character (¥ and € included), and the
right words at the right moment through the real pipeline."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import edge.feedback.screens as screens_module
from edge.config import ConfigError, KioskConfig, load_config
from edge.drivers import display_text
from edge.feedback.catalog import ZH, tr, tr_notice, tr_reason
from edge.feedback.outputs import GateAndScreen, money, screen_for
from edge.feedback.screens import (
    AlarmScreen,
    ApprovedScreen,
    BalanceScreen,
    DeniedScreen,
    IdleScreen,
    OutOfServiceScreen,
    PinScreen,
    Status,
    TopUpScreen,
)
from edge.taps.pipeline import TapPipeline
from edge.taps.reasons import DenyReason
from edge.taps.rules import Notice
from edge.validation import dump, load
from tests.kiosk_helpers import (
    SITE_KEY,
    RecordingFeedback,
    enroll,
    gate_config,
    grant,
    nfc,
    sync_down,
)

ROOT = Path(__file__).resolve().parent.parent
LANGS = ("en", "zh")


def tr_calls() -> set[str]:
    found = set()
    for path in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "tr"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found


def test_every_string_has_a_chinese_translation():
    calls = tr_calls()
    assert len(calls) > 20
    missing = sorted(m for m in calls if m not in ZH)
    assert missing == []
    for item in (*DenyReason, *Notice):
        zh = tr_reason(item, "zh") if isinstance(item, DenyReason) else tr_notice(item, "zh")
        assert display_text.has_cjk(zh), item


def test_a_string_with_no_translation_would_fail(monkeypatch):
    monkeypatch.setitem(ZH, "Approved", "Approved")
    assert not display_text.has_cjk(tr("Approved", "zh"))


def _ink(font, ch: str) -> bytes:
    image = Image.new("1", (40, 24))
    ImageDraw.Draw(image).text((2, 2), ch, font=font, fill=1)
    return image.tobytes()


def every_screen(lang):
    cur = "¥"
    yield IdleScreen(lang=lang)
    yield PinScreen(digits=2, lang=lang)
    yield OutOfServiceScreen(reason=tr_reason(DenyReason.OUT_OF_SERVICE, lang), lang=lang)
    yield AlarmScreen(lang=lang)
    yield TopUpScreen(money(1500, cur), lang=lang)
    yield TopUpScreen(money(1500, "€"), lang=lang, done=True, balance=money(21500, "€"))
    detail = tr(
        "Balance {balance}\nPrice {price}", lang, balance=money(500, cur), price=money(3000, cur)
    )
    short = tr_reason(DenyReason.INSUFFICIENT_BALANCE, lang)
    yield DeniedScreen(short, lang=lang, detail=detail)
    for reason in DenyReason:
        yield DeniedScreen(tr_reason(reason, lang), lang=lang)
    notes = [tr_notice(n, lang) for n in Notice]
    notes += [
        tr("{points} pts to {tier}", lang, points=1370, tier="Diamond"),
        tr("{points} pts lapse {date}", lang, points=200, date="12-31"),
    ]
    for note in notes:
        yield ApprovedScreen("王小明", f"-{money(3000, cur)}", money(17000, cur), lang, note)
    yield ApprovedScreen(tr("Code accepted", lang), tr("Welcome", lang), "-", lang)
    yield ApprovedScreen("王小明", "-¥20.00", "¥40.00", lang, tr("Now {tier}", lang, tier="Gold"))
    yield IdleScreen(lang=lang, prompt=tr("Tap card to see balance", lang))
    balance = (
        f"{money(12000, cur)}  {tr('{n} pts', lang, n=320)}",
        tr("Pass to {date}", lang, date="10-31"),
        f"+100.00 -20.00 -{tr('1 visit', lang)}",
    )
    yield BalanceScreen("王小明", balance, lang)
    yield BalanceScreen("Alice", (money(0, cur), f"swim {tr('{n} visits', lang, n=12)}", ""), lang)
    empty = (money(0, cur), "", tr("No movements yet", lang))
    yield BalanceScreen("Alice", empty, lang)
    yield ApprovedScreen(tr("Member", lang), tr("Pass OK", lang), tr("{n} visits", lang, n=9), lang)


@pytest.mark.parametrize("lang", LANGS)
def test_every_string_is_drawn_whole_with_a_glyph_for_each_character(lang, monkeypatch):
    fonts = display_text.default_fonts()
    assert fonts.has_cjk, "install fonts-unifont or xfonts-wqy"
    drawn: list[tuple[str, display_text.Fitted]] = []
    real = display_text.fit_text

    def recording(draw, text, box, **kw):
        fitted = real(draw, text, box, **kw)
        drawn.append((text, fitted))
        return fitted

    monkeypatch.setattr(screens_module, "fit_text", recording)
    for screen in every_screen(lang):
        image = screen.render(Status(online=False, lang=lang), fonts)
        assert image.size == (128, 64)
    assert len(drawn) > 60
    for text, fitted in drawn:
        assert fitted.complete, f"cut: {text!r} -> {fitted.lines}"
        font = fonts.font(fitted.px, text)
        tofu = _ink(font, "\U0010fffd" if display_text.needs_wide_font(text) else "\uffff")
        for ch in set(text) - {" ", "\n"}:
            assert _ink(font, ch) != tofu, f"no glyph for {ch!r} in {text!r}"


def test_yen_and_euro_lines_without_chinese_use_a_font_that_has_them():
    fonts = display_text.default_fonts()
    for text in ("-¥30.00", "€5.00"):
        font = fonts.font(16, text)
        assert _ink(font, text[0] if text[0] != "-" else "¥") != _ink(font, "\U0010fffd")


def test_prices_in_config_are_minor_units_or_exact_decimal_strings(tmp_path):
    path = tmp_path / "kiosk.toml"
    base = '[kiosk]\nid = "g"\nsite = "s"\nrole = "gate"\nproduct = "swim"\n'
    path.write_text(base + '[rules.products.swim]\nname = "Swim"\nprice = "25.00"\n')
    assert load_config(path).rules.products["swim"].price == 2500
    path.write_text(base + '[rules.products.swim]\nname = "Swim"\nprice = 2500\n')
    assert load_config(path).rules.products["swim"].price == 2500
    for bad in ("25.0", '"25.5"', '"25"', '"abc"'):
        path.write_text(base + f'[rules.products.swim]\nname = "Swim"\nprice = {bad}\n')
        with pytest.raises(ConfigError, match=r"rules\.products\.swim\.price"):
            load_config(path)


def zh_cfg(**rules) -> KioskConfig:
    raw = dump(gate_config(**rules))
    raw["kiosk"] |= {"currency": "¥", "timezone": "Asia/Shanghai"}
    raw["display"] = {"backend": "sim", "language": "zh"}
    return load(KioskConfig, raw)


async def test_not_enough_balance_shows_balance_and_price(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 500})
    grant(cloud, k1, "m1", "cash", 500)
    sync_down(cloud, k1)
    cfg = zh_cfg()
    kiosk = TapPipeline(cfg, k1, SITE_KEY, RecordingFeedback())
    out = await kiosk.card(nfc("04AA"))
    screen = screen_for(out, cfg)
    assert isinstance(screen, DeniedScreen)
    assert screen.reason == "余额不足"
    assert screen.detail == "余额 ¥5.00\n价格 ¥20.00"


async def test_stray_coin_says_insert_card_first_and_a_finished_topup_says_done(cloud_and_kiosks):
    cloud, k1, _ = cloud_and_kiosks()
    enroll(cloud, "m1", "Alice", "04AA", purses={"cash": 1000})
    sync_down(cloud, k1)
    raw = dump(zh_cfg())
    raw["kiosk"] |= {"role": "topup", "product": ""}
    cfg = load(KioskConfig, raw)
    kiosk = TapPipeline(cfg, k1, SITE_KEY, RecordingFeedback())
    stray = await kiosk.coin(100)
    assert stray.decision.reason is DenyReason.INSERT_CARD_FIRST
    assert screen_for(stray, cfg).reason == "请先刷卡，再投币"
    await kiosk.card(nfc("04AA"))
    await kiosk.coin(500)
    kiosk._recent.clear()  # the closing tap is a new tap, not a double tap
    done = await kiosk.card(nfc("04AA"))
    screen = screen_for(done, cfg)
    assert isinstance(screen, TopUpScreen) and screen.done
    assert (screen.inserted, screen.balance) == ("¥5.00", "¥15.00")


async def test_clock_in_the_site_time_zone_and_door_alarm_screen():
    cfg = zh_cfg()
    fx = GateAndScreen(cfg, None, None)
    assert fx.status().now.utcoffset() == timedelta(hours=8)
    await fx.door_alarm()
    assert fx.shown[-1] == "AlarmScreen"
    raw = dump(cfg)
    raw["kiosk"]["timezone"] = "Mars/Olympus"
    with pytest.raises(ValueError, match="not a known zone"):
        load(KioskConfig, raw)
