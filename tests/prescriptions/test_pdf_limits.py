"""PDFs are read in a sandboxed child process with limits: a hostile PDF is refused, the web process
carries on, and a child taken over by one can neither read the server's secrets nor outlive its job.

The hostile PDFs are real, built here, and their cost without limits was measured on the
development machine (figures in each builder). Where a test lowers the timeout it is only so the
suite does not wait 15 seconds: the slow PDF takes longer than the default too.

We cannot take PDFium over to test what a hijacked child could do, so two kinds of stand-in are used,
and only where said: the worker's own `confine` run in a small script that then tries what an
attacker's code would (open files, connect, fork, signal); and, in place of the worker, a script
that misbehaves as a hijacked child would (floods its stdout, forks a helper, lies about its
answer), started through the real `pdf_sandbox.run`, whose reading, killing and reaping is what is
tested.
"""

from __future__ import annotations

import io
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from shop.accounts.models import User
from shop.audit import AuditEvent
from shop.extensions import db
from shop.prescriptions import pdf_sandbox, pdf_worker, services
from shop.prescriptions.models import Prescription, PrescriptionFile
from shop.prescriptions.pdf_sandbox import PdfLimits
from shop.prescriptions.storage import KEY_FILE_NAME, store_for_app
from shop.prescriptions.validation import (
    MAX_BYTES,
    PdfTooDemanding,
    UploadRefused,
    render_pdf_page,
    validate_upload,
)
from tests.conftest import csrf_token
from tests.prescriptions.test_validation import (
    PDF_NO_PAGES,
    PDF_UNREADABLE,
    UNREADABLE,
    build_pdf,
    build_pdf_with_object_stream,
    page_objects,
    pdf_bytes,
    stream,
)

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


# The size of what comes back --------------------------------------------------------------------------


def refusal(data: bytes, limits: PdfLimits | None = None) -> str:
    with pytest.raises(UploadRefused) as caught:
        validate_upload(data, limits=limits)
    return caught.value.message


def inflating_pdf(text_bytes: int) -> bytes:
    """A small PDF whose page refers to a string of `text_bytes` letters kept in a compressed object
    stream: the normalised copy writes the string out plainly."""
    objects = page_objects(page_extra=b"/Note 6 0 R ")
    return build_pdf_with_object_stream(objects, {6: b"(" + b"A" * text_bytes + b")"})


def test_a_pdf_whose_clean_copy_would_be_over_10_mb_is_refused_as_unreadable() -> None:
    small = validate_upload(inflating_pdf(1_000_000))
    assert len(small.data) > 1_000_000  # the construct passes, and does inflate
    data = inflating_pdf(MAX_BYTES)
    assert len(data) < 20_000
    assert refusal(data) == PDF_UNREADABLE


def noise_page_pdf() -> bytes:
    """A page the shape of the largest render (1 x 2) covered by an image of random pixels at the
    render's resolution: the PNG of it cannot compress, the largest answer a render can give."""
    width, height = 1600, 3200
    pixels = os.urandom(width * height * 3)
    objects = page_objects(content=b"q 400 0 0 800 0 0 cm /Im0 Do Q")
    objects[3] = objects[3].replace(b"[0 0 595 842]", b"[0 0 400 800]").replace(
        b"/Font << /F1 5 0 R >>", b"/XObject << /Im0 6 0 R >>")
    objects[6] = stream(pixels, b"/Type /XObject /Subtype /Image /Width %d /Height %d "
                                b"/ColorSpace /DeviceRGB /BitsPerComponent 8 " % (width, height))
    return build_pdf(objects)


def test_the_largest_page_image_fits_under_the_answer_cap() -> None:
    png = render_pdf_page(noise_page_pdf(), 0, max_width=1600)
    raw_pixels = 1600 * 3200 * 3
    assert raw_pixels < len(png) <= pdf_worker.png_size_bound(1600)
    assert pdf_worker.png_size_bound(1600) < raw_pixels + 4 * 2**20  # a few MB over, not more


# Stand-ins for a hijacked child (see the module docstring) ---------------------------------------------


FLOOD = """
import os, sys
open(sys.argv[1], "w").write(str(os.getpid()))
while True:
    sys.stdout.buffer.write(b"x" * 65536)
"""

# Forks a helper that would outlive it, then either hangs or answers and exits at once, leaving the
# helper holding its stdout.
FORKS_A_HELPER = """
import os, sys, time
helper = os.fork()
if helper == 0:
    time.sleep(600)
    os._exit(0)
open(sys.argv[1], "w").write(str(helper))
if sys.argv[2] == "answers":
    sys.stdout.buffer.write(b'{"refused": "This PDF has no pages."}\\n')
    sys.stdout.flush()
    os._exit(0)
time.sleep(120)
"""

# Answers "clean" with a PDF of the size it is given, whatever it was sent.
LIES = """
import sys
size = int(sys.argv[1])
sys.stdout.buffer.write(b'{"ok": true, "size": %d, "pages": 1}\\n' % size + b"%PDF-" + b"0" * (size - 5))
"""


def use_stand_in(monkeypatch: pytest.MonkeyPatch, script: str, *args: object) -> None:
    command = [sys.executable, "-I", "-c", script, *map(str, args)]
    monkeypatch.setattr(pdf_sandbox, "command", lambda limits: command)


def dead(pid: int, within: float = 5.0) -> bool:
    """No such process, or a zombie that init has yet to collect."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_child_that_writes_more_than_any_answer_is_killed_and_the_upload_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "child.pid"
    use_stand_in(monkeypatch, FLOOD, pid_file)
    started = time.monotonic()
    assert refusal(pdf_bytes()) == UNREADABLE
    assert time.monotonic() - started < 5  # at the cap, not at the 15 s timeout
    assert dead(int(pid_file.read_text()), within=0)  # killed and reaped
    assert f"it wrote more than {MAX_BYTES} bytes (clean job)" in caplog.text


def test_a_child_that_answers_a_copy_over_10_mb_is_refused_as_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    use_stand_in(monkeypatch, LIES, MAX_BYTES + 1000)  # under the read cap, which allows the line's room
    assert refusal(pdf_bytes()) == PDF_UNREADABLE
    use_stand_in(monkeypatch, LIES, MAX_BYTES)  # the largest copy we store still comes through
    assert len(validate_upload(pdf_bytes()).data) == MAX_BYTES


def test_a_helper_forked_by_a_child_that_times_out_is_killed_with_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pid_file = tmp_path / "helper.pid"
    use_stand_in(monkeypatch, FORKS_A_HELPER, pid_file, "hangs")
    with pytest.raises(PdfTooDemanding) as caught:
        validate_upload(pdf_bytes(), limits=PdfLimits(timeout_seconds=1))
    assert caught.value.reason == "time"
    assert dead(int(pid_file.read_text()))


def test_a_helper_left_behind_by_a_child_that_answered_is_killed_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pid_file = tmp_path / "helper.pid"
    use_stand_in(monkeypatch, FORKS_A_HELPER, pid_file, "answers")
    started = time.monotonic()
    assert refusal(pdf_bytes()) == PDF_NO_PAGES  # its answer is read: the helper no longer holds stdout
    assert time.monotonic() - started < 5
    assert dead(int(pid_file.read_text()))


# The real worker ------------------------------------------------------------------------------------------


SECRETS = {
    "SECRET_KEY": "flask-session-signing-secret-0123456789abcdef",
    "DATABASE_URL": "postgresql+psycopg://shop:db-password-4711@db.internal/shop",
    "STRIPE_SECRET_KEY": "sk_live_do_not_leak_51H8",
    "PRESCRIPTION_ENCRYPTION_KEY": "cHJlc2NyaXB0aW9uLWtleS1kby1ub3QtbGVhaw==",
    "ACCOUNT_SECRETS_KEY": "YWNjb3VudC1zZWNyZXRzLWtleS1kby1ub3QtbGVhaw==",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-do-not-leak",
    "MAIL_PASSWORD": "smtp-password-do-not-leak",
}


def test_the_worker_sees_no_secrets_and_runs_confined_under_its_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    answer = pdf_sandbox.run({"job": "probe"}, b"", PdfLimits(timeout_seconds=6.5, memory_mb=300), max_payload=0)
    seen = answer.fields
    # Nothing is passed on; Python itself sets LC_CTYPE when it finds no locale (PEP 538).
    assert set(seen["env"]) <= {"LC_CTYPE"}
    for value in SECRETS.values():
        assert value not in json.dumps(seen)
    assert seen["limits"] == {
        "RLIMIT_AS": 300 * 2**20, "RLIMIT_CPU": 7, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 0, "RLIMIT_NPROC": 0,
    }
    assert seen["cwd"] == "/"
    assert seen["open_fds"] == [0, 1, 2]  # no database or client sockets
    # The sandbox is in force: no new privileges, a seccomp filter, no capabilities, and Landlock
    # with files, TCP, signals and abstract sockets handled (ABI 6 or later; this kernel has 7).
    assert (seen["no_new_privs"], seen["seccomp"], seen["capabilities"]) == (1, 2, [0, 0])
    assert seen["landlock_abi"] >= 6
    assert "unconfined" not in seen


# Runs the worker's own `confine`, as the worker does before reading a document, then tries what code
# that took PDFium over would try. Loaded as the real child loads it: a script beside its module.
ESCAPE_ATTEMPTS = """
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
import pdf_worker

confined, port, unix_path, paths = sys.argv[2] == "confined", int(sys.argv[3]), sys.argv[4], sys.argv[5:]
made_earlier = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if confined:
    pdf_worker.apply_limits(memory_mb=256, cpu_seconds=10)
    pdf_worker.confine()

def attempt(action):
    try:
        action()
    except OSError as error:
        return type(error).__name__
    return "done"

def fork():
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)

outcome = {path: attempt(lambda path=path: open(path, "rb").read(1)) for path in paths}
outcome["list /"] = attempt(lambda: os.listdir("/"))
outcome["connect"] = attempt(lambda: made_earlier.connect(("127.0.0.1", port)))
outcome["new socket"] = attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
outcome["udp"] = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port)))
outcome["unix socket"] = attempt(lambda: socket.socket(socket.AF_UNIX).connect(unix_path))
outcome["fork"] = attempt(fork)
outcome["signal the parent"] = attempt(lambda: os.kill(os.getppid(), 0))
print(json.dumps(outcome))
"""


def test_a_confined_worker_can_open_no_file_connect_nowhere_and_start_nothing(
    app: Flask, tmp_path: Path
) -> None:
    with app.app_context():
        store_for_app(app)  # makes sure the prescription key file exists
    key_file = Path(app.instance_path) / KEY_FILE_NAME
    secrets = ["/etc/hostname", str(key_file), f"/proc/{os.getpid()}/environ"]
    assert all(Path(path).read_bytes() for path in secrets)  # readable by this process's user
    unix_path = str(tmp_path / "db.sock")  # as a database listens on a UNIX socket

    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_UNIX) as unix,
    ):
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        unix.bind(unix_path)
        unix.listen()

        def attempts(mode: str) -> dict[str, str]:
            finished = subprocess.run(
                [sys.executable, "-I", "-B", "-c", ESCAPE_ATTEMPTS, str(pdf_sandbox.WORKER.parent), mode,
                 str(port), unix_path, *secrets],
                capture_output=True, env={}, cwd="/", timeout=60, check=True,
            )
            return json.loads(finished.stdout)

        assert set(attempts("unconfined").values()) == {"done"}  # the same user, without the sandbox
        confined = attempts("confined")
    assert confined == {
        **{path: "PermissionError" for path in secrets},
        "list /": "PermissionError",
        "connect": "PermissionError",  # Landlock: no TCP connect, even on a socket made before
        "new socket": "PermissionError",  # seccomp: no socket at all, so no UDP or UNIX one either
        "udp": "PermissionError",
        "unix socket": "PermissionError",
        "fork": "PermissionError",
        "signal the parent": "PermissionError",
    }


def test_the_worker_stops_itself_when_its_cpu_time_runs_out() -> None:
    """Even with no parent left to kill it, a spinning worker ends at its CPU cap."""
    job = json.dumps({"job": "clean", "max_size": MAX_BYTES}).encode() + b"\n" + slow_shading_pdf(100_000)
    started = time.monotonic()
    finished = subprocess.run(pdf_sandbox.command(PdfLimits(timeout_seconds=1)), input=job,
                              capture_output=True, env={}, cwd="/", timeout=60, check=False)
    assert finished.returncode == -signal.SIGXCPU
    assert finished.stdout == b""
    assert time.monotonic() - started < 1 + MARGIN_SECONDS


def test_a_worker_that_fails_is_reported_as_a_failure_not_as_a_document_problem() -> None:
    with pytest.raises(pdf_sandbox.JobFailed):
        pdf_sandbox.run({"job": "no such job"}, pdf_bytes(), PdfLimits(), max_payload=MAX_BYTES)


# The real worker, except that it skips `prepare`: as if a library started to import something on a
# path the warm-up does not take.
WITHOUT_PREPARE = """
import sys
sys.path.insert(0, sys.argv[1])
import pdf_worker
pdf_worker.prepare = lambda: None
sys.exit(pdf_worker.main(sys.argv[2:]))
"""


def test_a_module_needed_inside_the_sandbox_fails_the_job_loudly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clean = validate_upload(pdf_bytes())
    real_command = pdf_sandbox.command
    monkeypatch.setattr(pdf_sandbox, "command", lambda limits: [
        sys.executable, "-I", "-B", "-c", WITHOUT_PREPARE, str(pdf_sandbox.WORKER.parent), *real_command(limits)[4:],
    ])
    with pytest.raises(UploadRefused) as caught:
        render_pdf_page(clean.data, 0)
    assert caught.value.message == PDF_UNREADABLE
    # Not quietly taken for a damaged document: the log names the module to load in prepare().
    assert re.search(r"PDF worker imported \S+ after its sandbox closed", caplog.text)


def ink_width(png: bytes) -> int:
    with Image.open(io.BytesIO(png)) as image:
        box = image.convert("L").point(lambda value: 255 if value < 128 else 0).getbbox()
    return box[2] - box[0] if box else 0


def test_text_in_a_font_the_pdf_names_but_does_not_embed_is_drawn_readably() -> None:
    """Left to itself PDFium looks such a font up among the system's fonts (both named here are
    common on Linux) and opens the file, which the sandbox refuses: the line came out as a smudge
    a tenth of its width. The worker draws with PDFium's built-in fonts instead."""
    def page_in(font: bytes) -> bytes:
        objects = page_objects()
        objects[5] = b"<< /Type /Font /Subtype /TrueType /BaseFont /%s /FirstChar 32 /LastChar 126 >>" % font
        return build_pdf(objects)

    expected = ink_width(render_pdf_page(validate_upload(page_in(b"Helvetica")).data, 0, max_width=800))
    assert expected > 300
    for font in (b"LiberationSerif", b"DejaVuSans"):
        drawn = ink_width(render_pdf_page(validate_upload(page_in(font)).data, 0, max_width=800))
        assert 0.75 * expected < drawn < 1.25 * expected, font


# Starts the real worker with the Linux32 personality, under which uname says i686 rather than
# x86_64: the architecture the sandbox is not written for, as a kernel without Landlock would be.
AS_I686 = """
import ctypes, os, sys
ctypes.CDLL(None).personality(0x0008)
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_where_the_sandbox_cannot_be_set_up_pdfs_are_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_command = pdf_sandbox.command
    monkeypatch.setattr(pdf_sandbox, "command",
                        lambda limits: [sys.executable, "-I", "-c", AS_I686, *real_command(limits)])
    assert refusal(pdf_bytes()) == UNREADABLE
    assert "could not enter its sandbox (unsupported architecture i686)" in caplog.text
    assert "WITHOUT its sandbox" not in caplog.text

    # PDF_SANDBOX_REQUIRED false: the document is checked all the same, with a warning every time.
    assert validate_upload(pdf_bytes(pages=2), limits=PdfLimits(sandbox_required=False)).pages == 2
    assert "WITHOUT its sandbox" in caplog.text


def test_the_sandbox_setting_reaches_the_worker(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    assert app.config["PDF_SANDBOX_REQUIRED"] is True
    with app.app_context():
        assert "--sandbox required" in " ".join(pdf_sandbox.command(PdfLimits.from_config()))
        monkeypatch.setitem(app.config, "PDF_SANDBOX_REQUIRED", False)
        assert "--sandbox optional" in " ".join(pdf_sandbox.command(PdfLimits.from_config()))
