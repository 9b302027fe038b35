"""The console's journey through a Python client generated from the served
OpenAPI document (openapi-python-client): sign up, create three customers,
search, edit with a conflict, both photo flows, delete and restore, read the
history. Run by tests/clients/run.sh, which first checks this file with
`mypy --strict --disallow-any-expr`: every result used here is typed.

The generator types a response without a body (a `204`, and the HTTP
layer's bodiless `414` for an overlong request line) as `Any`; the two calls
whose answers include one carry `# type: ignore[misc]`, and no value of
either is read.
"""

import struct
import sys
import time
import zlib
from io import BytesIO
from typing import TypeVar
from uuid import UUID

from crm_client import AuthenticatedClient, Client
from crm_client.api.auth import signup
from crm_client.api.customers import (
    create_customer,
    customer_history,
    delete_customer,
    get_customer,
    list_customers,
    restore_customer,
    set_photo,
    update_customer,
)
from crm_client.api.photos import upload_photo
from crm_client.models import (
    CreateCustomer,
    CustomerDto,
    CustomerPage,
    PhotoRef,
    Problem,
    SetPhoto,
    SignupRequest,
    UpdateCustomer,
    UploadForm,
)
from crm_client.types import File, Response

T = TypeVar("T")


def ok(response: Response[T | Problem], status: int, what: str) -> T:
    """The typed body of an expected answer; anything else fails the journey."""
    parsed = response.parsed
    if response.status_code != status or parsed is None or isinstance(parsed, Problem):
        raise AssertionError(f"{what}: {response.status_code} {response.content!r}")
    return parsed


def problem(response: Response[T | Problem], status: int, what: str) -> Problem:
    parsed = response.parsed
    if response.status_code != status or not isinstance(parsed, Problem):
        raise AssertionError(f"{what}: expected {status}, got {response.status_code}")
    return parsed


def png(width: int, height: int) -> bytes:
    """A valid grey PNG, made here so that the journey needs no files."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def image(name: str) -> File:
    return File(payload=BytesIO(png(4, 3)), file_name=name, mime_type="image/png")


def main(base: str) -> None:
    public = Client(base_url=base)
    suffix = str(int(time.time() * 1000))
    account = ok(
        signup.sync_detailed(
            client=public,
            body=SignupRequest(
                company_name="Analytical Engines",
                name="Ada",
                email=f"ada-{suffix}@example.com",
                password="correct horse battery",
            ),
        ),
        201,
        "signup",
    )
    company: UUID = account.company.id
    client = AuthenticatedClient(base_url=base, token=account.access_token)

    created: list[CustomerDto] = []
    token = ""
    for name, surname in [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper")]:
        response = create_customer.sync_detailed(
            client=client, body=CreateCustomer(name=name, surname=surname)
        )
        customer = ok(response, 201, f"create {surname}")
        assert customer.company_id == company
        token = response.headers["x-consistency-token"]
        created.append(customer)
    ada, alan, grace = created

    # Search, reading the last create (read-your-writes through its token).
    searched = list_customers.sync_detailed(  # type: ignore[misc]
        client=client, q="turing", x_consistency_token=token
    )
    found = searched.parsed  # type: ignore[misc]
    assert isinstance(found, CustomerPage), searched.content  # type: ignore[misc]
    page: CustomerPage = found
    surnames: list[str] = [item.surname for item in page.items]
    assert surnames == ["Turing"], surnames

    # Edit with If-Match; the same version again is a conflict (412).
    first = f'"{alan.version}"'
    edited = ok(
        update_customer.sync_detailed(
            alan.id, client=client, body=UpdateCustomer(phone="+44 20 7946 0000"), if_match=first
        ),
        200,
        "edit",
    )
    assert edited.phone == "+44 20 7946 0000" and edited.version > alan.version
    stale = problem(
        update_customer.sync_detailed(
            alan.id, client=client, body=UpdateCustomer(notes="lost update"), if_match=first
        ),
        412,
        "edit with a stale version",
    )
    assert stale.status == 412

    # Photo, option 1: upload, then attach.
    photo = ok(
        upload_photo.sync_detailed(client=client, body=UploadForm(file=image("ada.png"))),
        201,
        "upload",
    )
    shown = ok(
        set_photo.sync_detailed(ada.id, client=client, body=SetPhoto(photo_id=photo.id)),
        200,
        "attach",
    )
    assert isinstance(shown.photo, PhotoRef) and shown.photo.id == photo.id, shown.photo

    # Photo, option 2: upload for a customer; the policy attaches it.
    upload = upload_photo.sync_detailed(
        client=client, body=UploadForm(file=image("grace.png"), customer_id=grace.id)
    )
    for_grace = ok(upload, 201, "upload for a customer")
    attached = ok(
        get_customer.sync_detailed(
            grace.id, client=client, x_consistency_token=upload.headers["x-consistency-token"]
        ),
        200,
        "read after the policy",
    )
    assert isinstance(attached.photo, PhotoRef), attached.photo
    assert attached.photo.id == for_grace.id

    # Delete, then restore.
    deleted = delete_customer.sync_detailed(grace.id, client=client)  # type: ignore[misc]
    assert deleted.status_code == 204, deleted.content  # type: ignore[misc]
    restored = ok(restore_customer.sync_detailed(grace.id, client=client), 200, "restore")
    assert restored.deleted_at is None

    # History: who changed what, oldest first.
    history = ok(customer_history.sync_detailed(grace.id, client=client), 200, "history")
    kinds: list[str] = [entry.type_ for entry in history.items]
    sequences: list[int] = [entry.sequence for entry in history.items]
    assert sequences == sorted(sequences) and kinds[0] == "CustomerRegistered", kinds
    assert kinds[-1] == "CustomerRestored", kinds
    print(f"python client journey: ok ({len(kinds)} history entries)")


if __name__ == "__main__":
    main(sys.argv[1])
