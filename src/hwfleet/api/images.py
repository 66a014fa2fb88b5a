"""The image registry (DESIGN §12): upload (streamed), list, show, delete.

``POST /api/v1/images?name=N`` takes the image as the raw request body
(``application/octet-stream``), written to disk as it arrives; the reply is
``{"id", "name", "sha256", "blake3", "size", "format", ...}``. Devices download images
from the separate mutual-TLS image server (:mod:`hwfleet.images.server`), never
from this operator API.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status

from hwfleet.api.auth import require_token
from hwfleet.api.deps import lookup
from hwfleet.images.registry import ImageError, ImageLimitError, ImageNotFoundError, ImageRegistry
from hwfleet.store.images import ImageRecord

router = APIRouter(prefix="/api/v1", tags=["images"], dependencies=[Depends(require_token)])


def image_registry(request: Request) -> ImageRegistry:
    return lookup(request, ImageRegistry, "the image registry is not running")


RegistryDep = Annotated[ImageRegistry, Depends(image_registry)]


def to_json(record: ImageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "sha256": record.sha256,
        # None for an image registered before blake3 was recorded (checked by sha256).
        "blake3": record.blake3,
        "size": record.size,
        "format": record.format,
        "source_format": record.source_format,
        "disk_size": record.disk_size,
        "created_at": record.created_at.isoformat(),
    }


@router.post("/images", status_code=status.HTTP_201_CREATED)
async def upload(
    request: Request,
    registry: RegistryDep,
    name: Annotated[str, Query(min_length=1, max_length=255)],
) -> dict[str, Any]:
    """Store the request body as a new image (raw, raw.gz, raw.zst or qcow2 by magic)."""
    try:
        record = await registry.add(request.stream(), name)
    except ImageLimitError as exc:
        raise HTTPException(413, str(exc)) from None
    except ImageError as exc:
        raise HTTPException(422, str(exc)) from None
    return to_json(record)


@router.get("/images")
async def list_images(registry: RegistryDep) -> list[dict[str, Any]]:
    return [to_json(r) for r in await registry.list()]


@router.get("/images/{image_id}")
async def show(image_id: str, registry: RegistryDep) -> dict[str, Any]:
    try:
        return to_json(await registry.get(image_id))
    except ImageNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.delete("/images/{image_id}")
async def delete(image_id: str, registry: RegistryDep) -> dict[str, Any]:
    try:
        return to_json(await registry.delete(image_id))
    except ImageNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
