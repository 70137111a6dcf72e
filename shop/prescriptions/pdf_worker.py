"""Everything that parses or draws a PDF. It runs in a child process, never in the web process.

`shop.prescriptions.pdf_sandbox` starts this file as a script (`python -I -B pdf_worker.py
--memory-mb N --cpu-seconds N`) with an empty environment and the root directory as its working
directory, writes one job to its stdin and reads one answer from its stdout. The worker caps its
own address space, CPU time, core dumps and file writes before it reads a byte of the document, so
a hostile PDF that makes pypdf or PDFium spin or swell costs a child process, not a web worker.

It imports nothing from `shop` on purpose: the package imports Flask and the app's configuration,
which would slow every start and put settings in the child's memory that it has no use for.

What is checked (unchanged from when this ran in the web process): the PDF is parsed by pypdf,
refused if it carries active or hidden content (JavaScript, launch actions, attachments, media,
XFA, form submission, links to other files), then rewritten page by page so that trailing data,
incremental updates, metadata and the catalog are dropped, and the rewritten file must open and
render in PDFium.

Protocol, all bytes:
    stdin   one JSON line, then the PDF up to end of file:
              {"job": "clean"}                                  check and normalise
              {"job": "render", "page": 0, "max_width": 1600}   draw one page as a PNG
              {"job": "probe"}                                  report environment and limits
    stdout  one JSON line, then the payload of a success:
              {"ok": true, "size": N, "pages": P}  + N bytes (the normalised PDF, or the PNG)
              {"refused": "<one of REFUSALS>"}     the document is refused for that reason
              {"failed": "memory"}                 the memory cap was reached
              {"failed": "<ExceptionType>"}        anything else unexpected (no message: it could
                                                   quote the confidential document)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from typing import Final

import pypdfium2 as pdfium
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

MAX_PDF_PAGES: Final = 20
# Upper bound on the PDF objects (indirect objects and nested dictionaries/arrays) we walk looking
# for active content; a genuine prescription has a few hundred at most.
MAX_PDF_OBJECTS: Final = 200_000
# The PDFium render check draws each page into a thumbnail no larger than this on either side.
CHECK_RENDER_SIDE: Final = 200
PDF_MAGIC: Final = b"%PDF-"
# The job line is tiny; a longer one is not from our parent.
MAX_JOB_LINE: Final = 4096

# The customer-facing sentences, one per reason.
PDF_UNREADABLE: Final = "We could not read this PDF. It may be damaged. Please send a scan or photo instead."
PDF_ENCRYPTED: Final = (
    "This PDF is password-protected. Please send a copy without a password, or a scan or photo instead."
)
PDF_NO_PAGES: Final = "This PDF has no pages."
PDF_NO_SUCH_PAGE: Final = "This PDF does not have that page."
PDF_TOO_MANY_PAGES: Final = (
    "This PDF has more than 20 pages. Please send only the pages of your prescription."
)
PDF_TOO_COMPLEX: Final = "This PDF is too complex for us to check. Please send a scan or photo instead."
PDF_JAVASCRIPT: Final = (
    "This PDF contains JavaScript, which we do not accept. Please send a scan or photo instead."
)
PDF_LAUNCH: Final = (
    "This PDF contains an action that starts a program, which we do not accept. "
    "Please send a scan or photo instead."
)
PDF_EMBEDDED_FILE: Final = (
    "This PDF contains attached or embedded files, which we do not accept. "
    "Please send a scan or photo instead."
)
PDF_RICH_MEDIA: Final = (
    "This PDF contains embedded media (video, sound or Flash), which we do not accept. "
    "Please send a scan or photo instead."
)
PDF_XFA: Final = (
    "This PDF is an XFA form, which we do not accept. Please print it to a plain PDF, "
    "or send a scan or photo instead."
)
PDF_FORM_ACTION: Final = (
    "This PDF contains a form that sends or loads data, which we do not accept. "
    "Please send a scan or photo instead."
)
PDF_REMOTE_LINK: Final = (
    "This PDF contains links that open other files, which we do not accept. "
    "Please send a scan or photo instead."
)

# PDF names that mark active or hidden content, whether they appear as a dictionary key
# (/JS, /EmbeddedFiles, /XFA) or as a value (/S /JavaScript, /Subtype /FileAttachment).
_FORBIDDEN_NAMES: Final[dict[str, str]] = {
    "/JavaScript": PDF_JAVASCRIPT,
    "/JS": PDF_JAVASCRIPT,
    "/Launch": PDF_LAUNCH,
    "/EmbeddedFiles": PDF_EMBEDDED_FILE,
    "/EmbeddedFile": PDF_EMBEDDED_FILE,
    "/FileAttachment": PDF_EMBEDDED_FILE,
    "/RichMedia": PDF_RICH_MEDIA,
    "/XFA": PDF_XFA,
    "/SubmitForm": PDF_FORM_ACTION,
    "/ImportData": PDF_FORM_ACTION,
    "/GoToR": PDF_REMOTE_LINK,
    "/GoToE": PDF_REMOTE_LINK,
}
_FORBIDDEN_RAW_NAMES: Final[dict[bytes, str]] = {
    name.encode("ascii"): message for name, message in _FORBIDDEN_NAMES.items()
}
# A PDF name token: "/" and then anything up to whitespace or a delimiter (ISO 32000-1, 7.2.2).
_RAW_NAME = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")

# Page-level entries the normalised copy leaves out: page actions, private application data and
# per-page XMP metadata (which can name the author or the software that made the scan).
_DROPPED_PAGE_KEYS: Final = ("/AA", "/PieceInfo", "/Metadata", "/StructParents")


# Every sentence the worker may answer with; the parent shows nothing else to a customer.
REFUSALS: Final = frozenset(
    {
        PDF_UNREADABLE, PDF_ENCRYPTED, PDF_NO_PAGES, PDF_NO_SUCH_PAGE, PDF_TOO_MANY_PAGES,
        PDF_TOO_COMPLEX, *_FORBIDDEN_NAMES.values(),
    }
)

# PDFium is not thread-safe. The worker is single-threaded, but tests and the benchmark also call
# these functions in their own process.
_PDFIUM_LOCK = threading.Lock()


class PdfRefused(ValueError):
    """The PDF is not accepted; `message` (one of REFUSALS) says why, in the customer's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Jobs ----------------------------------------------------------------------------------------------


def clean_pdf(data: bytes) -> tuple[bytes, int]:
    """The normalised copy of an uploaded PDF to store, and its page count.

    Raises PdfRefused, or MemoryError when the memory cap is reached (so that the parent can tell
    the customer the file is too demanding rather than damaged).
    """
    # Cheap second net first: forbidden names visible in the raw bytes outside stream data.
    _raw_scan(data)
    try:
        reader = PdfReader(BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise PdfRefused(PDF_ENCRYPTED)
        _walk_objects(reader)  # the main net: every object reachable from the trailer
        page_count = len(reader.pages)
        if page_count == 0:
            raise PdfRefused(PDF_NO_PAGES)
        if page_count > MAX_PDF_PAGES:
            raise PdfRefused(PDF_TOO_MANY_PAGES)
        # Every page needs a /MediaBox (inherited ones are copied in by pypdf). Its absence means
        # the page dictionary did not parse and lenient pypdf kept only the part before the damage;
        # storing that would silently turn a prescription page into a blank one.
        if any("/MediaBox" not in page for page in reader.pages):
            raise PdfRefused(PDF_UNREADABLE)
        normalised = _normalise(reader)
    except (PdfRefused, MemoryError):
        raise
    except Exception:  # pypdf raises many types (PdfReadError, KeyError, zlib.error...)
        raise PdfRefused(PDF_UNREADABLE) from None

    # Check what we will store, not what was sent: the rewritten file must open in PDFium (the
    # renderer the pharmacist's view uses) with the same pages, and each page must draw.
    try:
        with _PDFIUM_LOCK, _pdfium_document(normalised) as document:
            if len(document) != page_count:
                raise PdfRefused(PDF_UNREADABLE)
            for index in range(page_count):
                _render_page(document, index, CHECK_RENDER_SIDE, CHECK_RENDER_SIDE)
    except (PdfRefused, MemoryError):
        raise
    except Exception:  # PdfiumError, ValueError for absurd page sizes...
        raise PdfRefused(PDF_UNREADABLE) from None
    return normalised, page_count


def render_page_png(data: bytes, page_index: int, max_width: int) -> bytes:
    """A PNG of one page, at most `max_width` pixels wide and twice that high.

    Raises PdfRefused when the page does not exist or cannot be drawn, MemoryError at the cap.
    """
    try:
        with _PDFIUM_LOCK, _pdfium_document(data) as document:
            if not 0 <= page_index < len(document):
                raise PdfRefused(PDF_NO_SUCH_PAGE)
            # Portrait pages come out at max_width; very tall pages are capped at twice that height.
            image = _render_page(document, page_index, max_width, 2 * max_width)
        output = BytesIO()
        image.save(output, format="PNG", optimize=False)  # pixels only: a PDFium bitmap has no metadata
        return output.getvalue()
    except (PdfRefused, MemoryError):
        raise
    except Exception:
        raise PdfRefused(PDF_UNREADABLE) from None


# Checks ----------------------------------------------------------------------------------------------


def _raw_scan(data: bytes) -> None:
    """Refuse when a forbidden name shows in the file's text, stream contents left aside.

    Stream data (images, compressed content) is skipped because random binary holds "/JS" often
    enough to refuse genuine scans; names hidden in compressed object streams are the object walk's
    job. Names spelt with #xx escapes (/J#53) are decoded first.
    """
    for chunk in _outside_streams(data):
        for token in _RAW_NAME.findall(chunk):
            name = _NAME_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), token)
            message = _FORBIDDEN_RAW_NAMES.get(name)
            if message is not None:
                raise PdfRefused(message)


def _outside_streams(data: bytes) -> Iterator[bytes]:
    """The parts of a PDF between `stream` ... `endstream` bodies; linear time, however hostile."""
    position = 0
    while True:
        start = data.find(b"stream", position)
        while start > 0 and data[start - 3 : start] == b"end":  # "endstream" is not a stream start
            start = data.find(b"stream", start + 6)
        if start < 0:
            yield data[position:]
            return
        yield data[position : start + 6]
        end = data.find(b"endstream", start + 6)
        if end < 0:
            # No end marker: no real stream either, so the rest is ordinary text and is scanned.
            yield data[start + 6 :]
            return
        position = end + len(b"endstream")


def _walk_objects(reader: PdfReader) -> None:
    """Visit every object reachable from the trailer and refuse on a forbidden name.

    Iterative with a visited set, so reference cycles and deep nesting cannot hang or overflow
    it, and capped at MAX_PDF_OBJECTS. Resolving references reads objects out of compressed object
    streams, which the raw scan cannot see into. Stream data itself is not decoded.
    """
    stack: list[object] = [reader.trailer]
    seen: set[tuple[int, int]] = set()
    visited = 0
    while stack:
        item = stack.pop()
        if isinstance(item, IndirectObject):
            key = (item.idnum, item.generation)
            if key in seen:
                continue
            seen.add(key)
            item = item.get_object()
        visited += 1
        if visited > MAX_PDF_OBJECTS:
            raise PdfRefused(PDF_TOO_COMPLEX)
        if isinstance(item, DictionaryObject):  # StreamObject included: its dictionary is walked
            # dict.items, not DictionaryObject.items: keep references unresolved, we resolve above.
            for key_name, value in dict.items(item):
                _check_name(key_name)
                _check_value(value, stack)
        elif isinstance(item, ArrayObject):
            for value in list.__iter__(item):
                _check_value(value, stack)
        else:
            _check_name(item)


def _check_value(value: object, stack: list[object]) -> None:
    if isinstance(value, IndirectObject | DictionaryObject | ArrayObject):
        stack.append(value)
    else:
        _check_name(value)  # numbers and strings pass; only names are looked up


def _check_name(value: object) -> None:
    if isinstance(value, NameObject):
        message = _FORBIDDEN_NAMES.get(str(value))
        if message is not None:
            raise PdfRefused(message)


def _normalise(reader: PdfReader) -> bytes:
    """Rewrite the PDF with its pages only.

    The new file has no catalog extras (outlines, names, open actions, forms, XMP), no document
    information (author, producer), none of the bytes after %%EOF and none of the superseded
    objects of incremental updates: only the pages and what they draw with.
    """
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page, excluded_keys=_DROPPED_PAGE_KEYS)
    writer.metadata = None  # PdfWriter adds /Producer by default
    output = BytesIO()
    writer.write(output)
    return output.getvalue()


@contextmanager
def _pdfium_document(data: bytes) -> Iterator[pdfium.PdfDocument]:
    """Open bytes with PDFium and make sure the document is closed. Hold _PDFIUM_LOCK around it."""
    document = pdfium.PdfDocument(data)
    try:
        yield document
    finally:
        document.close()


def _render_page(document: pdfium.PdfDocument, index: int, max_width: int, max_height: int) -> Image.Image:
    """Draw one page no larger than max_width x max_height pixels, whatever size the page claims."""
    page = document[index]
    try:
        width, height = page.get_size()
        if not (math.isfinite(width) and math.isfinite(height)) or width < 1 or height < 1:
            raise PdfRefused(PDF_UNREADABLE)
        # A hair under the exact fit: PDFium rounds the bitmap size up, which would add a pixel.
        scale = min(max_width / width, max_height / height) * 0.999_999
        bitmap = page.render(scale=scale, may_draw_forms=False)
        try:
            return bitmap.to_pil().copy()  # copy: to_pil shares the buffer that close() frees
        finally:
            bitmap.close()
    finally:
        page.close()


# The child process ---------------------------------------------------------------------------------


def apply_limits(memory_mb: int, cpu_seconds: int) -> None:
    """Cap this process before it touches the document.

    The libraries are already loaded (about 60 MB of address space); the caps bound what a
    document can make them do. Limits are only ever lowered, never raised past a stricter one
    the server already runs under.
    """
    memory = memory_mb * 1024 * 1024
    _lower(resource.RLIMIT_AS, memory, memory)  # the address space: an allocation past it fails
    # CPU seconds: SIGXCPU at the soft limit, SIGKILL a second later. The parent's wall-clock
    # timeout normally fires first; this one also holds if the parent is gone.
    _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _lower(resource.RLIMIT_CORE, 0, 0)  # a crash must not leave the patient's document in a core file
    _lower(resource.RLIMIT_FSIZE, 0, 0)  # the worker writes no files (a pipe is not a file)


def _lower(which: int, soft: int, hard: int) -> None:
    current_soft, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    if current_soft != resource.RLIM_INFINITY:
        soft = min(soft, current_soft)
    resource.setrlimit(which, (min(soft, hard), hard))


def run_job(job: dict[str, object], data: bytes) -> tuple[dict[str, object], bytes]:
    """One job's answer line and payload. Raises PdfRefused or MemoryError."""
    kind = job.get("job")
    if kind == "clean":
        normalised, pages = clean_pdf(data)
        return {"ok": True, "size": len(normalised), "pages": pages}, normalised
    if kind == "render":
        page, max_width = job.get("page"), job.get("max_width")
        if type(page) is not int or type(max_width) is not int:
            raise ValueError("render needs integer page and max_width")
        png = render_page_png(data, page, max_width)
        return {"ok": True, "size": len(png), "pages": 1}, png
    if kind == "probe":
        return {"ok": True, "size": 0, "pages": 0, **_probe()}, b""
    raise ValueError(f"unknown job {kind!r}")


def _probe() -> dict[str, object]:
    """What this process can see and may use: its environment, limits, directory and open files."""
    limits = {
        name: resource.getrlimit(getattr(resource, name))[0]
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_FSIZE")
    }
    return {
        "env": dict(os.environ),
        "limits": limits,
        "cwd": os.getcwd(),
        "open_fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or draw one PDF read from stdin.")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    options = parser.parse_args(argv)
    apply_limits(options.memory_mb, options.cpu_seconds)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        job = json.loads(stdin.readline(MAX_JOB_LINE))
        if not isinstance(job, dict):
            raise ValueError("the job line is not a JSON object")
        answer, payload = run_job(job, stdin.read())
    except PdfRefused as refused:
        answer, payload = {"refused": refused.message}, b""
    except MemoryError:
        answer, payload = {"failed": "memory"}, b""
    except Exception as error:
        answer, payload = {"failed": type(error).__name__}, b""
    stdout.write(json.dumps(answer).encode("utf-8") + b"\n")
    stdout.write(payload)
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
