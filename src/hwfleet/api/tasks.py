"""Tasks: the long commands and their progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from hwfleet.api.auth import require_token
from hwfleet.api.convert import to_json
from hwfleet.api.deps import TasksDep
from hwfleet.api.schemas import Task
from hwfleet.api.services.history import since_time

router = APIRouter(prefix="/api/v1", tags=["tasks"], dependencies=[Depends(require_token)])


@router.get("/tasks", response_model=list[Task])
async def list_tasks(
    request: Request,
    tasks: TasksDep,
    device: str | None = None,
    active: bool = False,
    limit: int = Query(200, ge=1, le=5000),
    target: str | None = Query(None, max_length=4096, description="a target expression"),
    state: str | None = Query(None, description="states, comma-separated: error,lost"),
    since: str | None = Query(None, description="changed since: 1h, 30m, or an ISO time"),
) -> list[dict[str, Any]]:
    """Newest first. ``target`` keeps the tasks of the devices it selects now."""
    from hwfleet.api.targets import targets_service

    devices = None
    if target is not None:
        devices = await targets_service(request).resolve_uuids(target)
    states = [s.strip() for s in state.split(",") if s.strip()] if state else None
    try:
        return await tasks.list_tasks(
            device=device,
            active=active,
            limit=limit,
            devices=devices,
            states=states,
            since=since_time(since),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get("/tasks/{task_id}", response_model=Task)
async def get_task(
    task_id: str, tasks: TasksDep, wait: float = Query(0, ge=0, le=600)
) -> dict[str, Any]:
    """With ``wait``, hold the request until the task ends or ``wait`` seconds pass."""
    record = await tasks.get(task_id, wait)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id}")
    return to_json(record)


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, tasks: TasksDep) -> dict[str, Any]:
    """Ask the device to stop the task at its next safe point; the task then ends in
    ``error`` "cancelled" (follow it with ``GET /tasks/{id}?wait=``). ``task_id`` may be a
    unique prefix of an active task's id. 409 if it already ended or its device is away."""
    return await tasks.cancel(task_id)
