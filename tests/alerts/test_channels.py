"""Each delivery channel against a real receiver on loopback: what it sends, and that
only the receiver's confirmation counts as delivered."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import tomllib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import pytest

from tests.alerts.receivers import HttpReceiver, SmtpReceiver
from tests.conftest import DEMO_SITE
from zerocarbon.alerts.channel_setup import ChannelSetupError, build_channels
from zerocarbon.alerts.channels import (
    DeliveryError,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    MqttChannel,
    WebhookChannel,
    WeComChannel,
)
from zerocarbon.alerts.notify import AlertState, Notification
from zerocarbon.config import SiteConfig, SiteConfigError, parse_site

NOW_S = datetime(2026, 3, 1, 8, 0, tzinfo=UTC).timestamp()
ALERT_FIELDS: dict[str, Any] = {
    "alert_key": "drift/line-1",
    "rule": "line1-drift",
    "kind": "drift",
    "state": AlertState.FIRING,
    "severity": "warning",
    "ts": datetime(2026, 3, 1, 7, 59, 30, tzinfo=UTC),
    "message_zh": "1号线能耗偏高",
    "message_en": "line 1 energy above baseline",
    "evidence": {"excess_kwh": 12.5},
}
ALERT = Notification(**ALERT_FIELDS)


async def test_webhook_posts_the_json_and_needs_a_2xx() -> None:
    async with HttpReceiver([(503, {}), (200, {})]) as rx:
        channel = WebhookChannel("hook", f"{rx.url}/alerts")
        with pytest.raises(DeliveryError, match="503"):
            await channel.send(ALERT, NOW_S)
        await channel.send(ALERT, NOW_S)
    assert [r.path for r in rx.requests] == ["/alerts", "/alerts"]
    body = rx.requests[-1].json()
    assert body["change_id"] == ALERT.change_id
    assert body["message_zh"] == "1号线能耗偏高" and body["evidence"] == {"excess_kwh": 12.5}


async def test_webhook_down_is_a_delivery_error() -> None:
    async with HttpReceiver([(200, {})]) as rx:
        url = rx.url
    with pytest.raises(DeliveryError):
        await WebhookChannel("hook", url, timeout_s=2.0).send(ALERT, NOW_S)


async def test_wecom_needs_errcode_zero() -> None:
    answers = [
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}),
        (200, {"errcode": 0, "errmsg": "ok"}),
    ]
    async with HttpReceiver(answers) as rx:
        channel = WeComChannel("wecom", "k-123", base_url=rx.url)
        with pytest.raises(DeliveryError, match="45009"):
            await channel.send(ALERT, NOW_S)
        await channel.send(ALERT, NOW_S)
    request = rx.requests[-1]
    assert request.path == "/cgi-bin/webhook/send" and request.query["key"] == ["k-123"]
    body = request.json()
    assert body["msgtype"] == "text" and "1号线能耗偏高" in body["text"]["content"]
    assert ALERT.change_id in body["text"]["content"]


async def test_dingtalk_signature_checks_out_at_the_receiver() -> None:
    secret = "SEC0123456789abcdef"
    async with HttpReceiver(
        [
            (200, {"errcode": 310000, "errmsg": "sign not match"}),
            (200, {"errcode": 0, "errmsg": "ok"}),
        ]
    ) as rx:
        channel = DingTalkChannel("ding", "tok", secret=secret, base_url=rx.url)
        with pytest.raises(DeliveryError, match="310000"):
            await channel.send(ALERT, NOW_S)
        await channel.send(ALERT, NOW_S)
    request = rx.requests[-1]
    assert request.path == "/robot/send" and request.query["access_token"] == ["tok"]
    timestamp = request.query["timestamp"][0]
    assert int(timestamp) == int(NOW_S * 1000)
    # the receiver's check, as DingTalk documents it (parse_qs has URL-decoded sign)
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    ).decode()
    assert request.query["sign"] == [expected]


async def test_feishu_signature_and_code() -> None:
    secret = "feishu-secret"
    async with HttpReceiver(
        [(200, {"code": 19021, "msg": "sign match fail"}), (200, {"code": 0, "msg": "success"})]
    ) as rx:
        channel = FeishuChannel("feishu", "hook-1", secret=secret, base_url=rx.url)
        with pytest.raises(DeliveryError, match="19021"):
            await channel.send(ALERT, NOW_S)
        await channel.send(ALERT, NOW_S)
    request = rx.requests[-1]
    assert request.path == "/open-apis/bot/v2/hook/hook-1"
    body = request.json()
    assert body["timestamp"] == str(int(NOW_S))
    key = f"{body['timestamp']}\n{secret}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "text" and "line 1 energy" in body["content"]["text"]


async def test_email_through_a_local_smtp_server() -> None:
    async with SmtpReceiver(fail_first=1) as rx:
        channel = EmailChannel(
            "mail", "127.0.0.1", rx.port, "zc@plant.example", ("ops@plant.example",)
        )
        with pytest.raises(DeliveryError, match="451"):
            await channel.send(ALERT, NOW_S)
        assert rx.messages == []
        await channel.send(ALERT, NOW_S)
    assert len(rx.messages) == 1
    text = rx.messages[0].decode()
    assert f"X-Zerocarbon-Change-Id: {ALERT.change_id}" in text
    assert "Subject: [warning] line1-drift firing" in text


async def test_mqtt_publishes_the_json_at_qos_1(mqtt_url: str) -> None:
    parts = urlsplit(mqtt_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    topic = "zerocarbon/test/alerts"
    async with aiomqtt.Client(host, port=port) as sub:
        await sub.subscribe(topic, qos=1)
        await MqttChannel("mqtt", host, port, topic).send(ALERT, NOW_S)
        message = await asyncio.wait_for(anext(sub.messages), 10.0)
    assert isinstance(message.payload, bytes)
    assert json.loads(message.payload)["change_id"] == ALERT.change_id
    assert message.qos == 1


async def test_mqtt_broker_down_is_a_delivery_error() -> None:
    from zerocarbon.netutil import free_tcp_port

    with pytest.raises(DeliveryError):
        await MqttChannel("mqtt", "127.0.0.1", free_tcp_port(), "t", timeout_s=2.0).send(
            ALERT, NOW_S
        )


def _site_with(alerts: dict[str, object]) -> SiteConfig:
    data = tomllib.loads(DEMO_SITE.read_text(encoding="utf-8"))
    return parse_site({**data, "alerts": alerts}, "site.toml", DEMO_SITE.parent)


EXAMPLE_ENV = {
    "ZC_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    "ZC_WECOM_ROBOT_KEY": "wk",
    "ZC_DINGTALK_TOKEN": "dt",
    "ZC_DINGTALK_SECRET": "ds",
    "ZC_FEISHU_HOOK": "fh",
    "ZC_FEISHU_SECRET": "fs",
    "ZC_SMTP_PASSWORD": "pw",
}


def test_example_channels_build_from_the_environment() -> None:
    example = tomllib.loads((DEMO_SITE.parent / "alert-channels.toml").read_text("utf-8"))
    site = _site_with(example["alerts"])
    channels = build_channels(site.alerts, EXAMPLE_ENV)
    assert list(channels) == [
        "ops-webhook",
        "wecom-energy",
        "dingtalk-shift",
        "feishu-ems",
        "mail-ops",
        "scada-mqtt",
    ]
    assert channels["ops-webhook"] == WebhookChannel("ops-webhook", "http://127.0.0.1:9/hook")
    ding = channels["dingtalk-shift"]
    assert isinstance(ding, DingTalkChannel) and (ding.access_token, ding.secret) == ("dt", "ds")
    mail = channels["mail-ops"]
    assert isinstance(mail, EmailChannel) and mail.password == "pw" and mail.port == 587
    mqtt = channels["scada-mqtt"]
    assert isinstance(mqtt, MqttChannel) and (mqtt.host, mqtt.port) == ("127.0.0.1", 1883)
    missing = {k: v for k, v in EXAMPLE_ENV.items() if k != "ZC_FEISHU_SECRET"}
    with pytest.raises(
        ChannelSetupError, match=r"alerts.channels\[3\].secret_env: .*ZC_FEISHU_SECRET"
    ):
        build_channels(site.alerts, missing)


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"name": "w", "kind": "webhook"}, r"alerts.channels\[0\]: a webhook channel needs url"),
        ({"name": "m", "kind": "mqtt", "url": "mqtt://h"}, "needs topic"),
        ({"name": "e", "kind": "email", "smtp_host": "h", "sender": "a@b"}, "needs recipients"),
        ({"name": "x", "kind": "fax", "url": "u"}, r"alerts.channels\[0\].kind"),
        ({"name": "d", "kind": "dingtalk", "key_env": "bad name"}, r"channels\[0\].key_env"),
    ],
)
def test_channel_config_errors_name_the_field(channel: dict[str, object], message: str) -> None:
    with pytest.raises(SiteConfigError, match=message):
        _site_with({"channels": [channel]})


def test_channel_names_are_unique() -> None:
    hook = {"name": "w", "kind": "webhook", "url": "http://x"}
    with pytest.raises(SiteConfigError, match="repeated: \\['w'\\]"):
        _site_with({"channels": [hook, hook]})


async def test_wecom_text_is_cut_to_its_limit_keeping_the_change_id() -> None:
    long = Notification(**{**ALERT_FIELDS, "message_zh": "能耗" * 2000})
    async with HttpReceiver([(200, {"errcode": 0, "errmsg": "ok"})]) as rx:
        await WeComChannel("wecom", "k", base_url=rx.url).send(long, NOW_S)
    content = rx.requests[0].json()["text"]["content"]
    assert 2000 < len(content.encode()) <= 2048
    assert content.endswith(f"({long.change_id})")
