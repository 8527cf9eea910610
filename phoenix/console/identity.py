"""Who is at the console: the name recorded with every operator action.

Locally the OS user; against Google Cloud, the account of the application-default credentials
(a service account's email, or the user account gcloud recorded), else the OS user.
"""
from __future__ import annotations

import getpass
import os


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry (containers): the uid still names someone
        return f"uid {os.getuid()}"


def operator_name(settings) -> str:
    if settings.store != "firestore" and settings.trigger == "local":
        return os_user()
    try:
        import google.auth

        credentials, _ = google.auth.default()
    except Exception:  # noqa: BLE001 - no ADC: the local account is all we know
        return os_user()
    for attribute in ("service_account_email", "account", "signer_email"):
        value = getattr(credentials, attribute, None)
        if isinstance(value, str) and "@" in value:
            return value
    return f"{os_user()} (application-default credentials)"
