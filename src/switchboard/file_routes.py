"""Downloads: `GET /files/{id}` by a signed link (agents, people; no operator token), and
`GET /api/files/{id}` (metadata) and `/api/files/{id}/content` for operators.

Every download is sent as an attachment (`Content-Disposition`), with the stored type and
`X-Content-Type-Options: nosniff`, so a browser never renders an uploaded page as ours.
"""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import StreamingResponse

from channels.files import safe_name, safe_type
from switchboard.files import FileService, file_json
from switchboard.operators import Needs, Operator
from switchboard.scoping import own_file
from switchboard.store import FileRecord, Store


def download(files: FileService, file: FileRecord) -> StreamingResponse:
    """The file's bytes as a download."""
    name = safe_name(file.name)
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    headers = {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                                      f"filename*=UTF-8''{quote(name)}",
               "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    if file.size is not None:
        headers["Content-Length"] = str(file.size)
    return StreamingResponse(files.read(file.sha256 or ""), media_type=safe_type(file.type),
                             headers=headers)


def file_routes(*, store: Store, files: FileService, needs: Needs) -> APIRouter:
    router = APIRouter(tags=["files"])
    Viewer = Annotated[Operator, Depends(needs("viewer"))]

    async def kept(file_id: str) -> FileRecord:
        file = await store.files.get(file_id)
        if file is None or not file.sha256 or not await files.blobs.exists(file.sha256):
            raise HTTPException(404, f"no stored file {file_id}")
        return file

    @router.get("/files/{file_id}", summary="Download a file by a signed link")
    async def signed_download(file_id: str, expires: str = "", sig: str = ""
                              ) -> StreamingResponse:
        if not files.link_valid(file_id, expires, sig):
            raise HTTPException(403, "this download link is not valid (changed, or expired): "
                                "ask for a new one")
        return download(files, await kept(file_id))

    @router.get("/api/files/{file_id}")
    async def file_info(file_id: str, who: Viewer) -> dict[str, Any]:
        file = await store.files.get(file_id)
        if file is None:
            raise HTTPException(404, f"no file {file_id}")
        await own_file(store, who, file)
        return file_json(file, files)

    @router.get("/api/files/{file_id}/content")
    async def file_content(file_id: str, who: Viewer) -> StreamingResponse:
        file = await kept(file_id)
        await own_file(store, who, file)
        return download(files, file)

    return router


__all__ = ["download", "file_routes"]
