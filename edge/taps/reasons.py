"""Why a tap was refused, in plain words a member reads at the gate (English and Chinese)."""

from __future__ import annotations

import enum


class DenyReason(enum.Enum):
    """Every denial has one of these. The value is (English, Chinese)."""

    UNKNOWN_CARD = ("Card not recognised", "无法识别此卡")
    CARD_LOST = ("Card reported lost", "此卡已挂失")
    CARD_FROZEN = ("Card frozen", "此卡已冻结")
    CARD_CANCELLED = ("Card cancelled", "此卡已注销")
    CARD_REPLACED = ("Card replaced: use your new card", "此卡已换新，请用新卡")
    CARD_EXPIRED = ("Card expired", "此卡已过期")
    CARD_NOT_YET_VALID = ("Card not valid yet", "此卡尚未生效")
    CARD_NOT_SECURE = ("Card type not accepted here", "此处不接受该类卡片")
    INSUFFICIENT_BALANCE = ("Not enough balance", "余额不足")
    HELD_ELSEWHERE = ("Balance not available offline here", "离线时此处余额不可用")
    RISK_LIMIT = ("Offline limit reached", "已达离线限额")
    NO_VALID_PASS = ("No valid pass for this entry", "无有效票券")
    PASS_EXPIRED = ("Your pass has expired", "票券已过期")
    PASS_NOT_YET_VALID = ("Your pass is not valid yet", "票券尚未生效")
    INSERT_CARD_FIRST = ("Tap your card first, then insert coins", "请先刷卡，再投币")
    PASS_CHECK_STALE = ("Pass cannot be checked offline now", "离线过久，无法验证票券")
    CLOCK_UNTRUSTED = ("Clock not set: passes cannot be checked", "时钟未校准，无法验证票券")
    PIN_WRONG = ("Wrong PIN", "密码错误")
    PIN_LOCKED = ("Card locked: too many wrong PINs", "密码错误次数过多，已锁定")
    PIN_CANCELLED = ("PIN entry cancelled", "已取消密码输入")
    PASSBACK = ("Already entered: exit first", "已入场，请先出场")
    COUPON_USED = ("Coupon already used", "优惠券已使用")
    VOUCHER_USED = ("Voucher already used", "充值券已使用")
    UNKNOWN_CODE = ("Code not recognised", "无法识别此码")
    NO_AMOUNT = ("Enter the amount first", "请先输入金额")
    COULD_NOT_READ = ("Could not read: try again", "读取失败，请重试")
    BANK_CARD = ("Bank cards are not accepted", "不接受银行卡")
    OUT_OF_SERVICE = ("Out of service", "暂停服务")
    LEDGER_RECOVERING = ("Out of service: records being restored", "暂停服务：正在恢复记录")
    DISK_FULL = ("Out of service: storage full", "暂停服务：存储空间已满")

    @property
    def en(self) -> str:
        return self.value[0]

    @property
    def zh(self) -> str:
        return self.value[1]
