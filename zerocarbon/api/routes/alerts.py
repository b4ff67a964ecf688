"""``/api/v1/alerts``: alert episodes with their history, and their acknowledgement.

An alert is one *episode* of a rule on a subject: it fires, may be acknowledged, and
resolves (:mod:`zerocarbon.storage.alerts`). Reading needs what the other read routes
need; acknowledging needs the operator role, and records the token's name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from zerocarbon.api.auth import Principal, Role, require_role
from zerocarbon.api.deps import PoolDep
from zerocarbon.api.ranges import UNPROCESSABLE, as_utc, unprocessable
from zerocarbon.api.schemas import Alert
from zerocarbon.storage import alerts

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

MAX_COMMENT_CHARS = 500
MAX_ALERT_ID = 2**63 - 1  # bigserial

OperatorDep = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
AlertId = Annotated[int, Path(ge=1, le=MAX_ALERT_ID, description="The alert's id")]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No alert with that id"}
}


def _not_found(alert_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown alert {alert_id}")


@router.get(
    "",
    response_model=list[Alert],
    summary="Alerts and their history",
    responses={
        UNPROCESSABLE: {
            "description": "An unknown status or severity, since or until not ISO 8601, "
            "since >= until, or limit outside 1..1000"
        }
    },
)
async def list_alerts(
    pool: PoolDep,
    status_: Annotated[
        Literal["active", "resolved", "all"],
        Query(alias="status", description="active (firing), resolved or all"),
    ] = "all",
    rule: Annotated[str | None, Query(description="Rule name")] = None,
    kind: Annotated[
        str | None, Query(description="offline | threshold | demand | data_quality | drift")
    ] = None,
    subject: Annotated[str | None, Query(description="Device, line or site")] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    since: Annotated[
        datetime | None,
        Query(description="ISO 8601 (naive means UTC): alerts firing at or after it"),
    ] = None,
    until: Annotated[
        datetime | None,
        Query(description="ISO 8601 (naive means UTC): alerts fired before it"),
    ] = None,
    acked: Annotated[bool | None, Query(description="Acknowledged (true) or not (false)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Most alerts returned")] = 100,
) -> list[Alert]:
    """Alert episodes, the newest fired first, each with its changes (fired,
    acknowledged, resolved) in the order recorded. ``since``/``until`` select the episodes that
    were firing at some time in ``[since, until)``."""
    start, end = as_utc(since), as_utc(until)
    if start is not None and end is not None and start >= end:
        raise unprocessable(f"since {start.isoformat()} is not before until {end.isoformat()}")
    async with pool.acquire() as conn:
        found = await alerts.list_alerts(
            conn,
            status=status_,
            rule=rule,
            kind=kind,
            subject=subject,
            severity=severity,
            since=start,
            until=end,
            acked=acked,
            limit=limit,
        )
    return [Alert.of(a) for a in found]


@router.get("/{alert_id}", response_model=Alert, summary="One alert", responses=_NOT_FOUND)
async def get_alert(alert_id: AlertId, pool: PoolDep) -> Alert:
    """One alert episode with its history."""
    async with pool.acquire() as conn:
        found = await alerts.get_alert(conn, alert_id)
    if found is None:
        raise _not_found(alert_id)
    return Alert.of(found)


class AckRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    comment: str | None = Field(
        default=None,
        max_length=MAX_COMMENT_CHARS,
        description=f"Why, or what is being done (at most {MAX_COMMENT_CHARS} characters)",
    )


@router.post(
    "/{alert_id}/ack",
    response_model=Alert,
    summary="Acknowledge an alert (operator)",
    responses={
        **_NOT_FOUND,
        status.HTTP_401_UNAUTHORIZED: {"description": "No valid bearer token"},
        status.HTTP_403_FORBIDDEN: {"description": "The token's role is below operator"},
    },
)
async def acknowledge(
    alert_id: AlertId,
    principal: OperatorDep,
    pool: PoolDep,
    body: Annotated[AckRequest | None, Body()] = None,
) -> Alert:
    """Record that someone has seen the alert and is on it: the token's name, the time
    and the optional comment. Only the first acknowledgement counts; acknowledging
    again answers the alert unchanged. Acknowledging does not resolve the alert (its
    rule does) and is not sent to the alert channels."""
    comment = None if body is None else body.comment
    async with pool.acquire() as conn:
        found = await alerts.acknowledge(conn, alert_id, principal.name, comment, datetime.now(UTC))
    if found is None:
        raise _not_found(alert_id)
    return Alert.of(found)
