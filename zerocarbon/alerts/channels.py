"""Delivery channels: each sends one :class:`~zerocarbon.alerts.notify.Notification`.

``send`` returns only when the receiver confirmed the message and raises
:class:`DeliveryError` otherwise; the dispatcher (:mod:`zerocarbon.alerts.dispatcher`)
retries on that. What counts as confirmed:

- JSON webhook: an HTTP 2xx answer. The body is :meth:`Notification.to_json`, whose
  ``change_id`` lets the receiver drop a duplicate.
- WeCom group robot: HTTP 2xx and ``errcode == 0`` in the JSON answer. ``POST
  {base_url}/cgi-bin/webhook/send?key=KEY`` with ``{"msgtype": "text", "text":
  {"content": ...}}`` (WeCom "群机器人配置说明",
  https://developer.work.weixin.qq.com/document/path/91770).
- DingTalk custom robot: HTTP 2xx and ``errcode == 0``. ``POST
  {base_url}/robot/send?access_token=T[&timestamp=ms&sign=S]``; with a secret, ``S`` is
  the URL-encoded Base64 of HMAC-SHA256 keyed by the secret over ``"{timestamp}\\n{secret}"``,
  timestamp in milliseconds, accepted within one hour (DingTalk "自定义机器人安全设置",
  https://open.dingtalk.com/document/robots/customize-robot-security-settings).
- Feishu / Lark custom bot: HTTP 2xx and ``code == 0`` (older answers: ``StatusCode ==
  0``). ``POST {base_url}/open-apis/bot/v2/hook/TOKEN`` with ``{"msg_type": "text",
  "content": {"text": ...}}``; with a secret, the body also has ``timestamp`` (seconds)
  and ``sign``, the Base64 of HMAC-SHA256 keyed by ``"{timestamp}\\n{secret}"`` over
  an empty message (Feishu "自定义机器人使用指南",
  https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot).
- Email: the SMTP server accepted the message (RFC 5321 ``250`` after DATA) for at
  least one recipient; sent with the standard library's :mod:`smtplib` in a thread.
- MQTT: the broker's PUBACK for a QoS 1 publish (MQTT 3.1.1 §4.3.2), via aiomqtt.

The chat robots are small clients over httpx rather than apprise: each is one POST, and
the delivery guarantee needs the robot's own ``errcode`` / ``code``, which a
notification library reduces to a yes/no of its own making.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import quote_plus

import aiomqtt
import httpx

from zerocarbon.alerts.notify import Notification

__all__ = [
    "Channel",
    "DeliveryError",
    "DingTalkChannel",
    "EmailChannel",
    "FeishuChannel",
    "MqttChannel",
    "WeComChannel",
    "WebhookChannel",
    "dingtalk_sign",
    "feishu_sign",
]


WECOM_BASE_URL = "https://qyapi.weixin.qq.com"
WECOM_TEXT_MAX_BYTES = 2048  # text.content limit of the WeCom group robot [bytes, UTF-8]
DINGTALK_BASE_URL = "https://oapi.dingtalk.com"
FEISHU_BASE_URL = "https://open.feishu.cn"  # Lark: https://open.larksuite.com


class DeliveryError(RuntimeError):
    """The channel did not confirm the message; the text says what it answered."""


class Channel(Protocol):
    @property
    def name(self) -> str:
        """The channel's name in the site file (``[[alerts.channels]] name``)."""
        ...

    async def send(self, notification: Notification, now_s: float) -> None:
        """Deliver ``notification``; ``now_s`` is the clock's POSIX time [s] (signatures)."""
        ...


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot ``sign`` (URL-encoded), see the module docstring."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu custom bot ``sign``, see the module docstring."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def _post_json(
    url: str, body: dict[str, Any], timeout_s: float, headers: dict[str, str] | None = None
) -> httpx.Response:
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
    return response


def _answer(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except json.JSONDecodeError as exc:
        raise DeliveryError(f"answer is not JSON: {response.text[:200]}") from exc
    if not isinstance(data, dict):
        raise DeliveryError(f"answer is not a JSON object: {response.text[:200]}")
    return data


def _robot_text(notification: Notification, max_bytes: int | None = None) -> str:
    """The message text with the change id last; the text is cut (on a character
    boundary) so that the whole fits in ``max_bytes`` of UTF-8 when given."""
    tail = f"\n({notification.change_id})"
    text = notification.text
    if max_bytes is not None:
        room = max(0, max_bytes - len(tail.encode()))
        text = text.encode()[:room].decode(errors="ignore")
    return text + tail


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    name: str
    url: str
    timeout_s: float = 10.0

    async def send(self, notification: Notification, now_s: float) -> None:
        await _post_json(self.url, notification.to_json(), self.timeout_s)


@dataclass(frozen=True, slots=True)
class WeComChannel:
    name: str
    key: str
    base_url: str = WECOM_BASE_URL
    timeout_s: float = 10.0

    async def send(self, notification: Notification, now_s: float) -> None:
        url = f"{self.base_url.rstrip('/')}/cgi-bin/webhook/send?key={quote_plus(self.key)}"
        content = _robot_text(notification, WECOM_TEXT_MAX_BYTES)
        body = {"msgtype": "text", "text": {"content": content}}
        data = _answer(await _post_json(url, body, self.timeout_s))
        if data.get("errcode") != 0:
            raise DeliveryError(f"WeCom errcode {data.get('errcode')}: {data.get('errmsg')}")


@dataclass(frozen=True, slots=True)
class DingTalkChannel:
    name: str
    access_token: str
    secret: str | None = None
    base_url: str = DINGTALK_BASE_URL
    timeout_s: float = 10.0

    async def send(self, notification: Notification, now_s: float) -> None:
        url = f"{self.base_url.rstrip('/')}/robot/send?access_token={quote_plus(self.access_token)}"
        if self.secret:
            timestamp_ms = int(now_s * 1000)
            url += f"&timestamp={timestamp_ms}&sign={dingtalk_sign(self.secret, timestamp_ms)}"
        body = {"msgtype": "text", "text": {"content": _robot_text(notification)}}
        data = _answer(await _post_json(url, body, self.timeout_s))
        if data.get("errcode") != 0:
            raise DeliveryError(f"DingTalk errcode {data.get('errcode')}: {data.get('errmsg')}")


@dataclass(frozen=True, slots=True)
class FeishuChannel:
    name: str
    hook_token: str
    secret: str | None = None
    base_url: str = FEISHU_BASE_URL
    timeout_s: float = 10.0

    async def send(self, notification: Notification, now_s: float) -> None:
        url = f"{self.base_url.rstrip('/')}/open-apis/bot/v2/hook/{quote_plus(self.hook_token)}"
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": _robot_text(notification)}}
        if self.secret:
            timestamp_s = int(now_s)
            body["timestamp"] = str(timestamp_s)
            body["sign"] = feishu_sign(self.secret, timestamp_s)
        data = _answer(await _post_json(url, body, self.timeout_s))
        code = data.get("code", data.get("StatusCode"))
        if code != 0:
            raise DeliveryError(f"Feishu code {code}: {data.get('msg', data.get('StatusMessage'))}")


@dataclass(frozen=True, slots=True)
class EmailChannel:
    name: str
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = 30.0

    def _message(self, notification: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Subject"] = f"[{notification.severity}] {notification.rule} {notification.state}"
        msg["X-Zerocarbon-Change-Id"] = notification.change_id
        msg.set_content(_robot_text(notification))
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username and self.password:
                smtp.login(self.username, self.password)
            refused = smtp.send_message(msg, self.sender, list(self.recipients))
        if len(refused) == len(self.recipients):
            raise DeliveryError(f"every recipient refused: {refused}")

    async def send(self, notification: Notification, now_s: float) -> None:
        msg = self._message(notification)
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class MqttChannel:
    name: str
    host: str
    port: int
    topic: str
    timeout_s: float = 10.0
    username: str | None = None
    password: str | None = None

    async def send(self, notification: Notification, now_s: float) -> None:
        payload = json.dumps(notification.to_json(), ensure_ascii=False).encode()
        try:
            async with aiomqtt.Client(
                self.host,
                port=self.port,
                timeout=self.timeout_s,
                username=self.username,
                password=self.password,
            ) as client:
                await client.publish(self.topic, payload, qos=1)
        except (aiomqtt.MqttError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
