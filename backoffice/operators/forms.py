"""The login form: password (django-axes counts failures), then a TOTP code for operators
who have a TOTP device (django-otp); operators without one log in with the password alone."""

from __future__ import annotations

from typing import Any

from django_otp import user_has_device
from django_otp.admin import OTPAdminAuthenticationForm


class LoginForm(OTPAdminAuthenticationForm):  # type: ignore[misc]
    def clean_otp(self, user: Any) -> None:
        if user is not None and user_has_device(user):
            super().clean_otp(user)
