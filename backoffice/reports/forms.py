from __future__ import annotations

import datetime as dt

from django import forms
from django.utils.translation import gettext_lazy as _

from cloud_sync.reports import REPORTS

NAMES = [(n, n) for n in [*REPORTS, "shifts"]]
BY = (("day", _("day")), ("week", _("week")), ("month", _("month")))


def _month_ago() -> dt.date:
    return dt.date.today() - dt.timedelta(days=30)


def _tomorrow() -> dt.date:
    return dt.date.today() + dt.timedelta(days=1)


class ReportForm(forms.Form):
    name = forms.ChoiceField(label=_("report"), choices=NAMES, initial="stored-value")
    start = forms.DateField(label=_("from"), initial=_month_ago)
    end = forms.DateField(label=_("to (not included)"), initial=_tomorrow)
    by = forms.ChoiceField(label=_("per"), choices=BY, initial="day")
    site = forms.CharField(label=_("venue"), required=False, max_length=64)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if isinstance(start, dt.date) and isinstance(end, dt.date):
            if end <= start:
                raise forms.ValidationError(_("'to' must be after 'from'"))
            if (end - start).days > 3 * 366:
                raise forms.ValidationError(_("at most three years at once"))
        return data
