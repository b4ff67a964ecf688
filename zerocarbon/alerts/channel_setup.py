"""Channels from the site file's ``[[alerts.channels]]``, secrets read from the
environment variables the file names (:class:`~zerocarbon.config.AlertChannelConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from zerocarbon.alerts.channels import (
    DINGTALK_BASE_URL,
    FEISHU_BASE_URL,
    WECOM_BASE_URL,
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    MqttChannel,
    WebhookChannel,
    WeComChannel,
)
from zerocarbon.config import AlertChannelConfig, AlertsConfig

__all__ = ["ChannelSetupError", "build_channel", "build_channels"]


class ChannelSetupError(ValueError):
    """A channel cannot be built; the message names the config path and variable."""


def _value(
    cfg: AlertChannelConfig, where: str, field: str, environ: Mapping[str, str]
) -> str | None:
    env_name: str | None = getattr(cfg, f"{field}_env", None)
    if env_name is not None:
        value = environ.get(env_name)
        if not value:
            raise ChannelSetupError(
                f"{where}.{field}_env: environment variable {env_name} is not set"
            )
        return value
    given: str | None = getattr(cfg, field, None)
    return given


def _required(value: str | None, where: str, field: str) -> str:
    if not value:
        raise ChannelSetupError(f"{where}.{field}: required")
    return value


def build_channel(
    cfg: AlertChannelConfig, environ: Mapping[str, str], where: str = "alerts.channels"
) -> Channel:
    """One channel; ``where`` is its path in the site file, for error messages."""
    url = _value(cfg, where, "url", environ)
    key = _value(cfg, where, "key", environ)
    secret = _value(cfg, where, "secret", environ)
    if cfg.kind == "webhook":
        return WebhookChannel(cfg.name, _required(url, where, "url"), cfg.timeout_s)
    if cfg.kind == "wecom":
        return WeComChannel(
            cfg.name,
            _required(key, where, "key"),
            url or WECOM_BASE_URL,
            cfg.timeout_s,
        )
    if cfg.kind == "dingtalk":
        return DingTalkChannel(
            cfg.name,
            _required(key, where, "key"),
            secret,
            url or DINGTALK_BASE_URL,
            cfg.timeout_s,
        )
    if cfg.kind == "feishu":
        return FeishuChannel(
            cfg.name, _required(key, where, "key"), secret, url or FEISHU_BASE_URL, cfg.timeout_s
        )
    if cfg.kind == "email":
        password = _value(cfg, where, "password", environ)
        return EmailChannel(
            cfg.name,
            _required(cfg.smtp_host, where, "smtp_host"),
            cfg.smtp_port,
            _required(cfg.sender, where, "sender"),
            cfg.recipients,
            cfg.username,
            password,
            cfg.starttls,
            cfg.timeout_s,
        )
    parts = urlsplit(_required(url, where, "url"))
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ChannelSetupError(f"{where}.url: expected mqtt://host:port, got {url!r}")
    return MqttChannel(
        cfg.name,
        parts.hostname,
        parts.port or 1883,
        _required(cfg.topic, where, "topic"),
        cfg.timeout_s,
        cfg.username,
        _value(cfg, where, "password", environ),
    )


def build_channels(alerts: AlertsConfig, environ: Mapping[str, str]) -> dict[str, Channel]:
    """Every configured channel by name."""
    return {
        c.name: build_channel(c, environ, f"alerts.channels[{i}]")
        for i, c in enumerate(alerts.channels)
    }
