"""Subjects, streams and names of the uplink, defined once.

A site publishes on ``zc.<site>.<kind>`` only (its credentials allow nothing else);
``<site>`` is the uplink site id, a NATS subject token. The gateway's local JetStream
(its own domain, ``zc-<site>``) keeps the site's subjects in the stream
:data:`SITE_STREAM`; the center's stream :data:`CENTER_STREAM` sources every site's
stream; the center's workers share the durable pull consumer :data:`CENTER_CONSUMER`.
"""

from __future__ import annotations

from typing import Literal

from zerocarbon.config_uplink import check_site_id

__all__ = [
    "CENTER_CONSUMER",
    "CENTER_DOMAIN",
    "CENTER_STREAM",
    "KINDS",
    "SITE_STREAM",
    "Kind",
    "check_site_id",
    "deliver_subject",
    "kind_of",
    "site_subjects",
    "progress_subject",
    "site_inbox",
    "site_domain",
    "site_of",
    "subject",
]

Kind = Literal["readings", "hourly", "alerts", "events", "accounts", "status"]
KINDS: tuple[Kind, ...] = ("readings", "hourly", "alerts", "events", "accounts", "status")
PREFIX = "zc"
SITE_STREAM = "ZC_SITE"  # on each gateway's JetStream domain
CENTER_STREAM = "ZC_CENTER"  # on the center's domain
CENTER_CONSUMER = "center-ingest"  # the workers' durable pull consumer
CENTER_DOMAIN = "center"
DELIVER_PREFIX = "zcdeliver"  # the center's sourcing delivers a site's messages on zcdeliver.<site>
PROGRESS_PREFIX = "zcprogress"  # a gateway asks the center how far it has its stream
INBOX_PREFIX = "_ZC_INBOX"  # a gateway's reply subjects: _ZC_INBOX.<site>.*


def subject(site: str, kind: Kind) -> str:
    """``zc.<site>.<kind>``."""
    return f"{PREFIX}.{site}.{kind}"


def site_of(subject_name: str) -> str:
    """The site id of a ``zc.<site>.<kind>`` subject (ValueError otherwise)."""
    parts = subject_name.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ValueError(f"subject {subject_name!r} is not zc.<site>.<kind>")
    return parts[1]


def kind_of(subject_name: str) -> Kind:
    """The message kind of a ``zc.<site>.<kind>`` subject (ValueError otherwise)."""
    parts = subject_name.split(".")
    if len(parts) == 3 and parts[0] == PREFIX:
        for kind in KINDS:
            if parts[2] == kind:
                return kind
    raise ValueError(f"subject {subject_name!r} is not zc.<site>.<kind>")


def site_subjects(site: str) -> str:
    """``zc.<site>.>``: every subject of the site (its local stream's, its permission)."""
    return f"{PREFIX}.{site}.>"


def deliver_subject(site: str) -> str:
    """``zcdeliver.<site>``: where the center's sourcing delivers the site's messages."""
    return f"{DELIVER_PREFIX}.{site}"


def progress_subject(site: str) -> str:
    """``zcprogress.<site>``: the center answers with the highest sequence of the site's
    stream it holds (outside ``zc.<site>.>``, so the site's stream does not keep it)."""
    return f"{PROGRESS_PREFIX}.{site}"


def site_inbox(site: str) -> str:
    """The prefix of a gateway's reply subjects, ``_ZC_INBOX.<site>``: its credentials
    let the center's replies through to these only."""
    return f"{INBOX_PREFIX}.{site}"


def site_domain(site: str) -> str:
    """The JetStream domain of a site's gateway: ``zc-<site>``."""
    return f"zc-{site}"
