"""PDFs are read in a child process with limits: a hostile PDF is refused, the web process carries on.

The hostile PDFs are real, built here, and their cost without limits was measured on the
development machine (figures in each builder). Where a test lowers the timeout it is only so the
suite does not wait 15 seconds: the slow PDF takes longer than the default too.
"""

from __future__ import annotations

import io
import json
import re
import resource
import signal
import subprocess
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from shop.accounts.models import User
from shop.audit import AuditEvent
from shop.extensions import db
from shop.prescriptions import pdf_sandbox, pdf_worker, services
from shop.prescriptions.models import Prescription, PrescriptionFile
from shop.prescriptions.pdf_sandbox import PdfLimits
from shop.prescriptions.storage import store_for_app
from shop.prescriptions.validation import PdfTooDemanding, render_pdf_page, validate_upload
from tests.conftest import csrf_token
from tests.prescriptions.test_validation import build_pdf, page_objects, pdf_bytes, stream

TOO_SLOW = "This PDF could not be read in time. Please upload a photo or a simpler PDF."
TOO_BIG = "This PDF is too large or complex for us to read. Please upload a photo or a simpler PDF."
# A hostile file must be stopped within a few seconds of the limit, not run to its end.
MARGIN_SECONDS = 8


def slow_shading_pdf(steps: int) -> bytes:
    """One page painted by a function-based shading whose PostScript function adds and subtracts
    1, `steps` times; PDFium runs the function for every pixel it draws, in constant memory.

    100_000 steps (a 1.2 MB file): the 200-pixel check alone took 18.6 s, at 73 MB.
    1_000 steps: the check takes 0.2 s, but drawing the 1600-pixel page for the pharmacist 23 s.
    """
    objects = page_objects(content=b"/Sh0 sh")
    objects[3] = objects[3].replace(b"/Font << /F1 5 0 R >>", b"/Shading << /Sh0 6 0 R >>")
    objects[6] = (b"<< /ShadingType 1 /ColorSpace /DeviceRGB /Domain [0 1 0 1] "
                  b"/Matrix [595 0 0 842 0 0] /Function 7 0 R >>")
    program = b"{ pop " + b"1 add 1 sub " * steps + b"dup dup }"
    objects[7] = stream(program, b"/FunctionType 4 /Domain [0 1 0 1] /Range [0 1 0 1 0 1] ")
    return build_pdf(objects)


def memory_hungry_pdf() -> bytes:
    """A 120 KB PDF whose compressed content stream inflates to 60 MB of tiny filled rectangles.

    Checking it without limits took PDFium 4.8 s and 1.7 GB (peak resident memory).
    """
    content = zlib.compress(b"0 0 1 1 re f\n" * (60 * 2**20 // 13), 9)
    objects = page_objects()
    objects[4] = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content)
    return build_pdf(objects)


def stored_files(app: Flask) -> set[Path]:
    root = Path(app.config.get("PRESCRIPTION_STORAGE_PATH") or Path(app.instance_path) / "prescriptions")
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def post_pdf(client: FlaskClient, data: bytes, name: str = "scan.pdf"):
    form = {"csrf_token": csrf_token(client, "/prescriptions/new"), "note": "", "product_id": "",
            "files": [(io.BytesIO(data), name)]}
    return client.post("/prescriptions/new", data=form, content_type="multipart/form-data")


def assert_nothing_stored(app: Flask, files_before: set[Path]) -> None:
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Prescription)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(PrescriptionFile)) == 0
        assert not db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "prescription.uploaded")).first()
    assert stored_files(app) == files_before


def peak_memory_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # kilobytes on Linux


# The customer's upload ----------------------------------------------------------------------------


def test_a_pdf_too_slow_to_read_is_refused_in_time_and_nothing_is_stored(
    app: Flask, signed_in: Callable[[str], FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "PDF_RENDER_TIMEOUT_SECONDS", 2)
    client = signed_in("customer")
    before = stored_files(app)
    started = time.monotonic()
    response = post_pdf(client, slow_shading_pdf(100_000))
    assert time.monotonic() - started < 2 + MARGIN_SECONDS  # unlimited, the check takes 18 s
    assert response.status_code == 200
    assert f"scan.pdf: {TOO_SLOW}" in response.get_data(as_text=True)
    assert_nothing_stored(app, before)
    # The web process is unharmed: the next, ordinary PDF goes through under the same limit.
    assert post_pdf(client, pdf_bytes(pages=2), "letter.pdf").status_code == 302


def test_a_pdf_that_needs_too_much_memory_is_refused_at_the_default_cap(
    app: Flask, signed_in: Callable[[str], FlaskClient]
) -> None:
    assert app.config["PDF_RENDER_MEMORY_MB"] == 512
    client = signed_in("customer")
    before, peak_before = stored_files(app), peak_memory_mb()
    response = post_pdf(client, memory_hungry_pdf(), "bomb.pdf")
    assert response.status_code == 200
    assert f"bomb.pdf: {TOO_BIG}" in response.get_data(as_text=True)
    assert_nothing_stored(app, before)
    assert peak_memory_mb() - peak_before < 256  # the 1.7 GB went to a child, and was cut at 512 MB


def test_a_tiny_memory_cap_refuses_even_an_ordinary_pdf() -> None:
    tiny = PdfLimits(memory_mb=16)  # less than Python and the PDF libraries take before the job
    with pytest.raises(PdfTooDemanding) as caught:
        validate_upload(pdf_bytes(), limits=tiny)
    assert (caught.value.reason, caught.value.message) == ("memory", TOO_BIG)
    clean = validate_upload(pdf_bytes())  # the default cap is plenty for it
    with pytest.raises(PdfTooDemanding) as caught:
        render_pdf_page(clean.data, 0, limits=tiny)
    assert caught.value.reason == "memory"


def test_an_ordinary_pdf_comes_back_exactly_as_the_checks_make_it() -> None:
    data = build_pdf(page_objects())
    clean = validate_upload(data)
    assert (clean.data, clean.pages) == pdf_worker.clean_pdf(data)  # the process boundary changes nothing
    assert render_pdf_page(clean.data, 0, max_width=400) == pdf_worker.render_page_png(clean.data, 0, 400)


# The pharmacist's review page -----------------------------------------------------------------------


def test_a_page_too_slow_to_draw_shows_a_message_in_its_place(
    app: Flask, users: dict[str, int], signed_in: Callable[[str], FlaskClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = slow_shading_pdf(1_000)  # passes the upload check; its full-size page takes 23 s
    with app.app_context():
        prescription = services.upload(
            db.session.get(User, users["customer"]), [services.Upload(slow, "scan.pdf")],
            requested_product_id=None, note="", store=store_for_app(app),
        )
        pid, file_id = prescription.id, prescription.files[0].id
    monkeypatch.setitem(app.config, "PDF_RENDER_TIMEOUT_SECONDS", 2)
    pharmacist = signed_in("pharmacist")

    review = pharmacist.get(f"/pharmacy/prescriptions/{pid}")
    assert review.status_code == 200
    image_url = f"/prescriptions/{pid}/files/{file_id}?page=0"
    assert re.search(rf'<img src="{re.escape(image_url)}"', review.get_data(as_text=True))

    started = time.monotonic()
    page = pharmacist.get(image_url)
    assert time.monotonic() - started < 2 + MARGIN_SECONDS
    assert page.status_code == 503 and page.mimetype == "image/svg+xml"
    picture = page.get_data(as_text=True)
    assert "This page could not be drawn in time." in picture and "Download the file" in picture
    assert page.headers["Content-Security-Policy"] == "sandbox"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # The document itself is still there to download.
    download = pharmacist.get(f"/prescriptions/{pid}/files/{file_id}?download=1")
    assert download.status_code == 200 and download.data.startswith(b"%PDF-")


def test_a_page_that_needs_too_much_memory_shows_a_message_in_its_place(
    app: Flask, signed_in: Callable[[str], FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = signed_in("customer")
    assert post_pdf(client, pdf_bytes()).status_code == 302
    with app.app_context():
        record = db.session.scalars(sa.select(PrescriptionFile)).one()
        url = f"/prescriptions/{record.prescription_id}/files/{record.id}?page=0"
    assert signed_in("pharmacist").get(url).mimetype == "image/png"
    monkeypatch.setitem(app.config, "PDF_RENDER_MEMORY_MB", 16)
    page = signed_in("pharmacist").get(url)
    assert page.status_code == 503
    assert "This page is too large or complex to draw." in page.get_data(as_text=True)


# The child process itself ----------------------------------------------------------------------------


SECRETS = {
    "SECRET_KEY": "flask-session-signing-secret-0123456789abcdef",
    "DATABASE_URL": "postgresql+psycopg://shop:db-password-4711@db.internal/shop",
    "STRIPE_SECRET_KEY": "sk_live_do_not_leak_51H8",
    "PRESCRIPTION_ENCRYPTION_KEY": "cHJlc2NyaXB0aW9uLWtleS1kby1ub3QtbGVhaw==",
    "ACCOUNT_SECRETS_KEY": "YWNjb3VudC1zZWNyZXRzLWtleS1kby1ub3QtbGVhaw==",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-do-not-leak",
    "MAIL_PASSWORD": "smtp-password-do-not-leak",
}


def test_the_worker_sees_no_secrets_and_runs_under_its_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    answer = pdf_sandbox.run({"job": "probe"}, b"", PdfLimits(timeout_seconds=6.5, memory_mb=300))
    seen = answer.fields
    # Nothing is passed on; Python itself sets LC_CTYPE when it finds no locale (PEP 538).
    assert set(seen["env"]) <= {"LC_CTYPE"}
    for value in SECRETS.values():
        assert value not in json.dumps(seen)
    assert seen["limits"] == {
        "RLIMIT_AS": 300 * 2**20, "RLIMIT_CPU": 7, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 0,
    }
    assert seen["cwd"] == "/"
    # stdin, stdout, stderr and the descriptor that listed them: no database or client sockets.
    assert len(seen["open_fds"]) == 4 and seen["open_fds"][:3] == [0, 1, 2]


def test_the_worker_stops_itself_when_its_cpu_time_runs_out() -> None:
    """Even with no parent left to kill it, a spinning worker ends at its CPU cap."""
    job = json.dumps({"job": "clean"}).encode() + b"\n" + slow_shading_pdf(100_000)
    started = time.monotonic()
    finished = subprocess.run(pdf_sandbox.command(PdfLimits(timeout_seconds=1)), input=job,
                              capture_output=True, env={}, cwd="/", timeout=60, check=False)
    assert finished.returncode == -signal.SIGXCPU
    assert finished.stdout == b""
    assert time.monotonic() - started < 1 + MARGIN_SECONDS


def test_a_worker_that_fails_is_reported_as_a_failure_not_as_a_document_problem() -> None:
    with pytest.raises(pdf_sandbox.JobFailed):
        pdf_sandbox.run({"job": "no such job"}, pdf_bytes(), PdfLimits())
