"""Tasks: the long commands and their progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.deps import TasksDep
from hwfleet.api.schemas import Task

router = APIRouter(prefix="/api/v1", tags=["tasks"], dependencies=[Depends(require_token)])


@router.get("/tasks", response_model=list[Task])
async def list_tasks(
    tasks: TasksDep,
    device: str | None = None,
    active: bool = False,
    limit: int = Query(200, ge=1, le=5000),
) -> list[dict[str, Any]]:
    return await tasks.list_tasks(device=device, active=active, limit=limit)


@router.get("/tasks/{task_id}", response_model=Task)
async def get_task(
    task_id: str, tasks: TasksDep, wait: float = Query(0, ge=0, le=600)
) -> dict[str, Any]:
    """With ``wait``, hold the request until the task ends or ``wait`` seconds pass."""
    record = await tasks.get(task_id, wait)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return to_json(record)
