"""The operator groups the console ships, with their base permissions (app_label.codename).
A chain admin changes them in the admin (Groups) and adds per-user permissions on a user."""

from __future__ import annotations

CASHIER = (
    "members.view_member",
    "members.add_member",
    "members.view_card",
    "members.link_card",
    "members.top_up",
)
VENUE_MANAGER = (
    *CASHIER,
    "members.change_member",
    "members.card_lifecycle",
    "members.refund",
    "members.issue_codes",
    "members.import_member",
    "members.export_member",
    "operators.view_fleet",
    "audit.view_action",
)
AUDITOR = (
    "members.view_member",
    "members.view_card",
    "members.export_member",
    "operators.view_fleet",
    "operators.view_operator",
    "audit.view_action",
    "audit.export_action",
    "auditlog.view_logentry",
    "auth.view_user",
    "auth.view_group",
    "axes.view_accessattempt",
    "axes.view_accessfailurelog",
    "axes.view_accesslog",
)
# The chain admin: every permission of these apps (everything, including operators).
CHAIN_ADMIN_APPS = ("members", "operators", "audit", "auth", "auditlog", "axes", "otp_totp")
# (api and webhooks are added by operators migration 0003)

GROUPS: dict[str, tuple[str, ...]] = {
    "cashier": CASHIER,
    "venue manager": VENUE_MANAGER,
    "auditor": AUDITOR,
}
CHAIN_ADMIN = "chain admin"
