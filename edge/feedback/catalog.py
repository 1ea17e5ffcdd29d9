"""Every word a member reads on the kiosk, in English and 简体中文, from one catalog.

gettext-style: the English text is the message id, `tr(msgid, lang, **values)` gives it in the
kiosk's language with `{name}` fields filled in. Denial reasons (`DenyReason`) and notices
(`Notice`) carry their two texts with them and come through `tr_reason` / `tr_notice`. A test
walks every `tr("...")` call in edge/ and fails on a message id with no translation.
"""

from __future__ import annotations

from typing import Literal

from edge.taps.reasons import DenyReason
from edge.taps.rules import Notice

Lang = Literal["en", "zh"]

ZH: dict[str, str] = {
    # screens
    "Tap card or scan code": "请刷卡或扫码",
    "Approved": "通过",
    "Denied": "拒绝",
    "Left": "余额",
    "Top-up": "充值",
    "Insert coins, then tap card": "请投币，完成后刷卡",
    "Top-up done": "充值完成",
    "Enter PIN": "请输入密码",
    "Service": "维护",
    "Out of service": "暂停服务",
    "online": "在线",
    "OFFLINE": "离线",
    "Pass OK": "票券有效",
    "Code accepted": "券码有效",
    "Welcome": "欢迎",
    "Member": "会员",
    "Balance {balance}\nPrice {price}": "余额 {balance}\n价格 {price}",
    "{points} pts to {tier}": "差{points}分升{tier}",
    "{points} pts lapse {date}": "{points}分{date}到期",
    "Added {amount}": "已充{amount}",
    "Door open too long": "门未关闭",
    "Close the door": "请关门",
    "Balance": "余额查询",
    "{n} visits": "{n}次",
    "1 visit": "1次",
    "{n} pts": "{n}分",
    "Tap card to see balance": "请刷卡查询余额",
    "Pass to {date}": "有效期至{date}",
    "Now {tier}": "已升级{tier}",
    "No movements yet": "暂无记录",
}


def tr(msgid: str, lang: Lang, **values: object) -> str:
    """The message in `lang`, fields filled in; English when the catalog has no translation
    (a test keeps that from happening)."""
    text = ZH.get(msgid, msgid) if lang == "zh" else msgid
    return text.format(**values) if values else text


def tr_reason(reason: DenyReason, lang: Lang) -> str:
    return reason.zh if lang == "zh" else reason.en


def tr_notice(notice: Notice, lang: Lang) -> str:
    return notice.value[1] if lang == "zh" else notice.value[0]
