"""Tasks: the long commands and their progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.schemas import Task

router = APIRouter(prefix="/api/v1", tags=["tasks"], dependencies=[Depends(require_token)])


@router.get("/tasks", response_model=list[Task])
async def list_tasks(
    request: Request,
    device: str | None = None,
    active: bool = False,
    limit: int = Query(200, ge=1, le=5000),
) -> list[dict[str, Any]]:
    async with request.app.state.ctl.store.tx() as tx:
        rows = await tx.tasks.list(device_uuid=device, active_only=active, limit=limit)
    return [to_json(r) for r in rows]


@router.get("/tasks/{task_id}", response_model=Task)
async def get_task(
    task_id: str, request: Request, wait: float = Query(0, ge=0, le=600)
) -> dict[str, Any]:
    """With ``wait``, hold the request until the task ends or ``wait`` seconds pass."""
    ctl = request.app.state.ctl
    if wait:
        record = await ctl.tasks.wait(task_id, wait)
    else:
        async with ctl.store.tx() as tx:
            record = await tx.tasks.get(task_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return to_json(record)
