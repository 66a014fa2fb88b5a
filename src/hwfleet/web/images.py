"""The dashboard's Images page: the registry's images, an upload streamed to it, deletion.

Reads and writes go through the registry service (:class:`~hwfleet.images.registry.ImageRegistry`,
the same one ``/api/v1/images`` uses), never the store. An upload is the file itself as
the request body (``dashboard.js`` sends the chosen ``File`` with ``fetch``): the browser
streams it from disk and the registry writes it as it arrives, so no image is held in
memory or spooled twice. The CSRF token travels in the ``X-CSRF-Token`` header and is
checked, with the session, before the first byte is read. Deleting asks first: the
Delete link opens a confirmation page whose form (with the CSRF token) does the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from hwfleet.api.deps import EventsDep
from hwfleet.api.images import RegistryDep
from hwfleet.images.registry import ImageError, ImageNotFoundError
from hwfleet.store.images import ImageRecord
from hwfleet.web import csrf
from hwfleet.web.actions import attempt, checked_form, outcome
from hwfleet.web.auth import SessionDep
from hwfleet.web.pages import show

router = APIRouter(include_in_schema=False)
#: The route the upload's body streams to (its size cap is the streamed one, see api.limits).
UPLOAD_PATH = "/images/upload"


@dataclass(frozen=True, slots=True)
class ImageView:
    id: str
    name: str
    format: str
    source_format: str
    size: int
    disk_size: int
    sha256: str
    created_at: str

    @property
    def size_text(self) -> str:
        return human_size(self.size)

    @classmethod
    def of(cls, record: ImageRecord) -> ImageView:
        return cls(
            record.id,
            record.name,
            record.format,
            record.source_format,
            record.size,
            record.disk_size,
            record.sha256,
            iso(record.created_at),
        )


def iso(at: datetime) -> str:
    return at.isoformat()


def human_size(size: int) -> str:
    """``1.5 GiB`` for a byte count (the exact count is shown beside it as a title)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable: the loop returns at TiB


@router.get("/images", response_class=HTMLResponse)
async def images_page(
    request: Request, session: SessionDep, registry: RegistryDep, events: EventsDep
) -> HTMLResponse:
    rows = [ImageView.of(r) for r in await registry.list()]
    rows.sort(key=lambda image: image.created_at, reverse=True)
    return await show(request, "images.html", session, events, images=rows)


@router.post(UPLOAD_PATH)
async def upload(
    request: Request,
    session: SessionDep,
    registry: RegistryDep,
    name: str = Query("", max_length=255),
) -> Response:
    csrf.check(request, session, {})  # the header: the body is the image, read only after
    if request.headers.get("content-type", "").startswith("multipart/"):
        message = "uploading needs JavaScript here (or: hwfleet images add FILE)"
        return outcome(request, "/images", False, message)
    try:
        record = await registry.add(request.stream(), name)
    except ImageError as exc:
        return outcome(request, "/images", False, f"upload refused: {exc}")
    size = human_size(record.size)
    return outcome(request, "/images", True, f"image {record.name} stored ({size}, {record.id})")


@router.get("/images/{image_id}/delete", response_class=HTMLResponse)
async def confirm_delete(
    request: Request, image_id: str, session: SessionDep, registry: RegistryDep, events: EventsDep
) -> HTMLResponse:
    try:
        image = ImageView.of(await registry.get(image_id))
    except ImageNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return await show(request, "image_delete.html", session, events, image=image)


@router.post("/images/{image_id}/delete")
async def delete(
    request: Request, image_id: str, session: SessionDep, registry: RegistryDep
) -> Response:
    await checked_form(request, session)

    async def act() -> str:
        record = await registry.delete(image_id)
        return f"image {record.name} ({record.id}) deleted"

    return outcome(request, "/images", *await attempt(act))
