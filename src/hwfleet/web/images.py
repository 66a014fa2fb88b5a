"""The dashboard's Images page: the registry's images, an upload streamed to it, deletion.

Reads and writes go through the registry service (:class:`~hwfleet.images.registry.ImageRegistry`,
the same one ``/api/v1/images`` uses), never the store. An upload is the file itself as
the request body (``dashboard.js`` sends the chosen ``File`` with ``fetch``), with the CSRF
token in the ``X-CSRF-Token`` header, checked with the session before the first byte is
read. Without JavaScript the form posts ``multipart/form-data`` to the same route: the
body is parsed as it arrives (:mod:`hwfleet.web.multipart`), the CSRF field (which the
form puts before the file) is checked before the file part is read, and the file's bytes
go to the registry as they arrive; the answer is a redirect to the Images page naming the
new image. Either way the browser streams the file from disk and the registry writes it
as it arrives, so no image is held in memory or spooled twice. Deleting asks first: the
Delete link opens a confirmation page whose form (with the CSRF token) does the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from python_multipart.exceptions import MultipartParseError

from hwfleet.api.deps import EventsDep
from hwfleet.api.images import RegistryDep
from hwfleet.api.services.events import EventsService
from hwfleet.images.registry import ImageError, ImageNotFoundError, ImageRegistry
from hwfleet.store.images import ImageRecord
from hwfleet.web import csrf
from hwfleet.web.actions import attempt, checked_form, outcome
from hwfleet.web.auth import Session, SessionDep
from hwfleet.web.multipart import FormError, FormStream
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
    blake3: str | None
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
            record.blake3,
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
    request: Request,
    session: SessionDep,
    registry: RegistryDep,
    events: EventsDep,
    added: str = Query("", max_length=64),
) -> HTMLResponse:
    notice = None
    if added:  # where a form upload without JavaScript lands
        image = next((r for r in await registry.list() if r.id == added), None)
        if image is not None:
            notice = (True, stored_message(image))
    return await page(request, session, registry, events, notice)


async def page(
    request: Request,
    session: Session,
    registry: ImageRegistry,
    events: EventsService,
    notice: tuple[bool, str] | None,
    code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    rows = [ImageView.of(r) for r in await registry.list()]
    rows.sort(key=lambda image: image.created_at, reverse=True)
    reply = await show(request, "images.html", session, events, images=rows, notice=notice)
    reply.status_code = code
    return reply


def stored_message(record: ImageRecord) -> str:
    return f"image {record.name} stored ({human_size(record.size)}, {record.id})"


@router.post(UPLOAD_PATH)
async def upload(
    request: Request,
    session: SessionDep,
    registry: RegistryDep,
    events: EventsDep,
    name: str = Query("", max_length=255),
) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/"):
        return await upload_form(request, session, registry, events, content_type)
    csrf.check(request, session, {})  # the header: the body is the image, read only after
    try:
        record = await registry.add(request.stream(), name)
    except ImageError as exc:
        return outcome(request, "/images", False, f"upload refused: {exc}")
    return outcome(request, "/images", True, stored_message(record))


async def upload_form(
    request: Request,
    session: Session,
    registry: ImageRegistry,
    events: EventsService,
    content_type: str,
) -> Response:
    """The form posted without JavaScript: CSRF field, name, then the file, streamed."""

    async def refused(message: str) -> Response:
        notice = (False, f"upload refused: {message}")
        return await page(request, session, registry, events, notice, status.HTTP_400_BAD_REQUEST)

    try:
        form = FormStream(content_type, request.stream())
        fields = await form.fields()
    except (FormError, MultipartParseError) as exc:
        return await refused(str(exc))
    csrf.check(request, session, fields)  # before a byte of the file is stored
    if not form.filename:
        return await refused("choose a file to upload")
    name = fields.get("name", "").strip() or PurePosixPath(form.filename.replace("\\", "/")).name
    try:
        record = await registry.add(form.file(), name)
    except (ImageError, FormError, MultipartParseError) as exc:
        return await refused(str(exc))
    return RedirectResponse(f"/images?added={record.id}", status.HTTP_303_SEE_OTHER)


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
