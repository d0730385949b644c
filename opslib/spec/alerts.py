"""The `alerts:` block: where an automation's failures are sent, checked like every other key.

A channel is an e-mail address or a webhook. A webhook's URL usually carries its own token, so
it lives in Secret Manager and the file names only the secret (`webhook: alerts-hook`, or a
pinned `alerts-hook:3`); step `alerts` reads it when it builds the notification channel and
never prints it. What fires is in `opslib.steps.alerts` and docs/alerts.md.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opslib.spec import rules as g
from opslib.spec.rules import RuleBroken

# One @, something on each side, a dot in the domain: what Monitoring's email channel takes.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
CHANNELS_MAX = 16  # opslib's own limit: one incident must not fan out to a crowd


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Channel(_Model):
    """One place an incident is sent: `email: ADDRESS` or `webhook: SECRET[:VERSION]`."""

    email: str | None = None
    webhook: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.fullmatch(value):
            raise RuleBroken(
                "an email channel is one address, like ops@example.com",
                "write the address Cloud Monitoring should mail",
            )
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" in value:  # the URL itself pasted here: say so without repeating it
            raise RuleBroken(
                "a webhook URL is a secret (it carries its token): the file names the Secret "
                "Manager secret that holds it, never the URL",
                "store it (opslib secrets add alerts-hook) and write webhook: alerts-hook",
            )
        ref = value if ":" in value else f"{value}:latest"
        g.check_secret_ref(ref)
        return ref

    @model_validator(mode="after")
    def _one_kind(self) -> Channel:
        given = [k for k in ("email", "webhook") if getattr(self, k) is not None]
        if len(given) != 1:
            raise RuleBroken(
                "a channel is exactly one of email or webhook"
                + (f" (this one gives {' and '.join(given)})" if given else ""),
                "write one channel per list item: - email: ops@example.com, or "
                "- webhook: alerts-hook",
            )
        return self

    @property
    def kind(self) -> str:
        return "email" if self.email is not None else "webhook"

    @property
    def secret(self) -> tuple[str, str] | None:
        """(secret id, version) of a webhook's URL, None for e-mail."""
        if self.webhook is None:
            return None
        name, _, version = self.webhook.rpartition(":")
        return name.split("/")[-1], version

    @property
    def key(self) -> str:
        """What the channel is, without any secret: `email ops@example.com`, `webhook hook`."""
        secret = self.secret
        return f"email {self.email}" if secret is None else f"webhook {secret[0]}"


class Alerts(_Model):
    """Who hears about this automation's failed or overrunning runs."""

    channels: list[Channel] = Field(default_factory=list)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[Channel]) -> list[Channel]:
        if not value:
            raise RuleBroken(
                "alerts needs at least one channel",
                "add channels: [{email: ops@example.com}], or remove the alerts block",
            )
        if len(value) > CHANNELS_MAX:
            raise RuleBroken(
                f"at most {CHANNELS_MAX} channels per automation",
                "send to a group address or one webhook that fans out",
            )
        keys = [c.key for c in value]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise RuleBroken(
                f"each channel once: {', '.join(twice)} is listed twice",
                "remove the repeated channel",
            )
        return value
