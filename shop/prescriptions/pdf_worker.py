"""Everything that parses or draws a PDF. It runs in a child process, never in the web process.

`shop.prescriptions.pdf_sandbox` starts this file as a script (`python -I -B pdf_worker.py
--memory-mb N --cpu-seconds N --sandbox required|optional`) with an empty environment and the root
directory as its working directory, writes one job to its stdin and reads one answer from its
stdout. It imports nothing from `shop` on purpose: the package imports Flask and the app's
configuration, which would slow every start and put settings in the child's memory.

Before it reads a byte of the document, the worker loads everything it will need (it checks and
draws a tiny built-in PDF, so that pypdf, PDFium and Pillow have imported and initialised all they
load lazily, and tells PDFium to use its built-in fonts only), then shuts itself in (`confine`):

* resource limits: address space, CPU time, no core dumps, no file writes, no new processes;
* `PR_SET_NO_NEW_PRIVS`, then a Landlock domain that handles every filesystem right the kernel's
  Landlock ABI knows (up to ABI 7) with no rule at all, so no file or directory can be opened,
  listed, created, removed, renamed, linked, truncated or executed: not `/proc/<web pid>/environ`
  (SECRET_KEY, DATABASE_URL, Stripe and encryption keys), not `instance/*.key`, not `shop.db`, not
  the stored prescriptions. From ABI 4 it may not bind or connect a TCP socket; from ABI 6 it may
  not signal, or reach the abstract UNIX sockets of, any process outside its domain. Landlock also
  forbids it to ptrace a process outside the domain;
* all capabilities dropped (they only exist when the server runs as root);
* a seccomp filter that makes the system calls in `_FORBIDDEN_SYSCALLS` fail with EPERM: new
  processes, threads and programs (RLIMIT_NPROC alone does not bind root), every kind of socket
  (Landlock only covers TCP, not UDP or UNIX sockets such as the database's), other processes'
  memory, io_uring, SysV and POSIX IPC, key rings, chmod/chown/xattr/utime, namespaces, and leaving
  the process group that the parent kills. A system call of another ABI (x32, i386) kills it.

A worker that cannot do all of this (another architecture than x86_64, a kernel without Landlock)
refuses to run the job and answers {"failed": "sandbox"}, unless started with `--sandbox optional`
(the PDF_SANDBOX_REQUIRED setting, for development machines without Landlock): it then runs with
the resource limits and the empty environment only, and says so in its answer ("unconfined").

What the sandbox does NOT guarantee: the worker still holds its stdin (the document), its stdout
(its answer, which the parent caps in size and checks) and its CPU and memory up to the caps. It
can still learn metadata: stat() and readlink() work on any path (that a file exists, its size,
owner and times), as do uname, the clock and its own process's details. It runs as the web
server's user, so a kernel bug that lets it out of Landlock and seccomp would give it that user's
files; the sandbox narrows what a PDFium bug can reach, it is not a virtual machine. Rights that
Landlock ABIs after 7 add are not handled, and on kernels before ABI 6 (Linux 6.12) it could still
signal other processes of the same user.

What is checked (unchanged from when this ran in the web process): the PDF is parsed by pypdf,
refused if it carries active or hidden content (JavaScript, launch actions, attachments, media,
XFA, form submission, links to other files), then rewritten page by page so that trailing data,
incremental updates, metadata and the catalog are dropped, and the rewritten file must open and
render in PDFium.

Protocol, all bytes:
    stdin   one JSON line, then the PDF up to end of file:
              {"job": "clean", "max_size": N}               check and normalise; refused as
                                                            unreadable if the copy exceeds N bytes
              {"job": "render", "page": 0, "max_width": 1600}   draw one page as a PNG
              {"job": "probe"}                                  report environment and limits
    stdout  one JSON line, then the payload of a success:
              {"ok": true, "size": N, "pages": P}  + N bytes (the normalised PDF, or the PNG)
              {"refused": "<one of REFUSALS>"}     the document is refused for that reason
              {"failed": "memory"}                 the memory cap was reached
              {"failed": "sandbox", "detail": ...} the sandbox could not be set up (no document read)
              {"failed": "import", "detail": ...}  a module was needed after the sandbox closed
              {"failed": "<ExceptionType>"}        anything else unexpected (no message: it could
                                                   quote the confidential document)
            Any answer line may also carry "unconfined": true (see above).
"""

from __future__ import annotations

import argparse
import codecs
import ctypes
import errno
import json
import math
import os
import re
import resource
import sys
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import PathFinder
from io import BytesIO
from typing import Final

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
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


def clean_pdf(data: bytes, max_size: int | None = None) -> tuple[bytes, int]:
    """The normalised copy of an uploaded PDF to store, and its page count.

    Refused as unreadable when the copy is larger than `max_size` bytes (the rewrite can inflate
    what the upload had compressed). Raises PdfRefused, or MemoryError when the memory cap is
    reached (so that the parent can tell the customer the file is too demanding rather than damaged).
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
    if max_size is not None and len(normalised) > max_size:
        raise PdfRefused(PDF_UNREADABLE)

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


def png_size_bound(max_width: int) -> int:
    """The most bytes `render_page_png` can answer for `max_width`: a page of noise, which does not
    compress, at the largest size it draws (max_width x 2 max_width pixels of 3 bytes: PDFium
    draws an opaque page as BGR, which Pillow encodes as an RGB PNG)."""
    raw = 2 * max_width * (1 + 3 * max_width)  # a PNG row is a filter byte and its pixels
    # Deflate adds well under 0.1 % to data it cannot compress, PNG 12 bytes a 64 KB chunk.
    return raw + raw // 100 + 2**20


# The child process: limits ---------------------------------------------------------------------------


def apply_limits(memory_mb: int, cpu_seconds: int) -> None:
    """Cap this process before it touches the document.

    The libraries are already imported (about 60 MB of address space), and their warm-up
    (`prepare`) runs under the caps too; the caps bound what a document can make them do. Limits
    are only ever lowered, never raised past a stricter one the server already runs under.
    """
    memory = memory_mb * 1024 * 1024
    _lower(resource.RLIMIT_AS, memory, memory)  # the address space: an allocation past it fails
    # CPU seconds: SIGXCPU at the soft limit, SIGKILL a second later. The parent's wall-clock
    # timeout normally fires first; this one also holds if the parent is gone.
    _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _lower(resource.RLIMIT_CORE, 0, 0)  # a crash must not leave the patient's document in a core file
    _lower(resource.RLIMIT_FSIZE, 0, 0)  # the worker writes no files (a pipe is not a file)
    # No new processes (nor threads). The kernel does not apply it to root, hence the seccomp filter.
    _lower(resource.RLIMIT_NPROC, 0, 0)


def _lower(which: int, soft: int, hard: int) -> None:
    current_soft, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    if current_soft != resource.RLIM_INFINITY:
        soft = min(soft, current_soft)
    resource.setrlimit(which, (min(soft, hard), hard))


# The child process: loading everything first ---------------------------------------------------------


def prepare() -> None:
    """Load and initialise, from trusted input, everything a job needs; after `confine` nothing can be.

    PDFium is told to use its built-in fonts only. Otherwise, for a font the document names but does
    not embed, it lists the system's font folders and later opens the matching file, which the
    sandbox refuses: measured, that draws such text as garbage, where the built-in substitutes draw
    it readably (and the same on every server). Then a tiny PDF is checked and drawn, which makes
    pypdf, PDFium and Pillow import the modules and build the tables they load on first use.
    """
    pdfium_raw.FPDF_SetSystemFontInfo(None)
    normalised, _pages = clean_pdf(_warm_up_pdf())
    render_page_png(normalised, 0, 16)
    # Loaded on paths the tiny PDF does not take: pypdf's filters, limits and XMP, and the codecs it
    # decodes names and strings with (a name that is not UTF-8 is tried as GBK, for one).
    for module in _LAZY_MODULES:
        __import__(module)
    for codec in _CODECS:
        codecs.lookup(codec)


_LAZY_MODULES: Final = (
    "pypdf._configuration", "pypdf.filters", "pypdf.xmp", "pypdf.generic._image_inline",
    "pypdf.generic._image_xobject", "pypdf._crypt_providers",
)
_CODECS: Final = (
    "utf-8", "utf-16", "utf-16-be", "utf-16-le", "latin-1", "charmap", "ascii", "gbk", "gb2312",
    "gb18030", "cp932", "cp950", "cp1250", "cp1252", "cp1254", "cp1257", "iso8859-15",
)
_late_imports: list[str] = []


class _LateImportWatcher:
    """First on sys.meta_path once the sandbox is closed: notes each module Python then looks for
    that exists as a file (which it cannot load), and lets the search go on, to fail as it will.
    An optional module that is not installed at all (pypdf's brotli) fails the same unconfined."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: object = None) -> None:
        if PathFinder.find_spec(name, path) is not None:  # from the finders' caches, or stat()
            _late_imports.append(name)


def _warm_up_pdf() -> bytes:
    """One page with a line of Helvetica text in a Flate-compressed content stream."""
    content = zlib.compress(b"BT /F1 12 Tf 8 30 Td (Rx 1) Tj ET 0 0 1 rg 8 8 20 10 re f")
    return one_page_pdf(content, b"[0 0 72 72]", b"/Filter /FlateDecode ")


def one_page_pdf(content: bytes, media_box: bytes, stream_extra: bytes = b"") -> bytes:
    """A one-page PDF with its xref table: the content stream `content`, Helvetica as /F1."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>" % media_box,
        b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(content), stream_extra, content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# The child process: the sandbox ----------------------------------------------------------------------


class SandboxUnavailable(RuntimeError):
    """The sandbox could not be set up; the message says which part (it never quotes a document)."""


# Linux x86_64 only: the seccomp filter needs each architecture's system call numbers and audit
# value, and this is the one the worker is tested on. Landlock's numbers are the same everywhere.
_ARCHITECTURE: Final = "x86_64"
_AUDIT_ARCH_X86_64: Final = 0xC000003E
_X32_SYSCALL_BIT: Final = 0x4000_0000
_SYS_LANDLOCK_CREATE_RULESET: Final = 444
_SYS_LANDLOCK_RESTRICT_SELF: Final = 446
_LANDLOCK_CREATE_RULESET_VERSION: Final = 1
# Landlock filesystem rights by the ABI that introduced them (include/uapi/linux/landlock.h): ABI 1
# EXECUTE to MAKE_SYM (13 rights), 2 REFER, 3 TRUNCATE, 5 IOCTL_DEV. ABIs 4, 6 and 7 add none.
_LANDLOCK_FS_RIGHTS: Final = {1: (1 << 13) - 1, 2: 1 << 13, 3: 1 << 14, 5: 1 << 15}
_LANDLOCK_NET_TCP: Final = (1 << 0) | (1 << 1)  # BIND_TCP | CONNECT_TCP, from ABI 4
_LANDLOCK_SCOPE_ALL: Final = (1 << 0) | (1 << 1)  # ABSTRACT_UNIX_SOCKET | SIGNAL, from ABI 6
_PR_GET_SECCOMP: Final = 21
_PR_SET_SECCOMP: Final = 22
_PR_SET_NO_NEW_PRIVS: Final = 38
_PR_GET_NO_NEW_PRIVS: Final = 39
_SECCOMP_MODE_FILTER: Final = 2
_LINUX_CAPABILITY_VERSION_3: Final = 0x2008_0522

# System calls the worker never makes, x86_64 numbers. After `confine` they fail with EPERM.
_FORBIDDEN_SYSCALLS: Final = {
    # New processes, threads and programs (RLIMIT_NPROC does not bind root; threads would share it).
    "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
    # Every socket: Landlock only covers TCP, not UDP, raw or UNIX sockets (the database's).
    "socket": 41, "socketpair": 53,
    # Other processes' memory, and a submission queue whose operations this filter would not see.
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "io_uring_setup": 425,
    # IPC objects and key rings shared with the other processes of the same user.
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
    "semtimedop": 220, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "mq_open": 240,
    "add_key": 248, "request_key": 249, "keyctl": 250,
    # Metadata changes, which Landlock does not cover, on files the same user owns.
    "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93,
    "lchown": 94, "fchownat": 260, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
    "setxattrat": 463, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
    "removexattrat": 466, "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280,
    # Kernel interfaces that exploits reach for, and namespaces.
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "unshare": 272, "setns": 308,
    "name_to_handle_at": 303, "open_by_handle_at": 304,
    # Leaving the process group (and session) that the parent kills on a timeout.
    "setsid": 112, "setpgid": 109,
}

_landlock_abi_in_force = 0  # what `confine` applied, for the probe


class _LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32),
    ]


def confine(*, required: bool = True) -> int:
    """Shut this process in (see the module's docstring); returns the Landlock ABI now in force.

    Raises SandboxUnavailable on another architecture or a kernel without Landlock, unless not
    `required`: then nothing is applied and 0 is returned. Once Landlock is known to be there, any
    failure to apply a part raises, required or not. Load everything needed first (`prepare`).
    """
    global _landlock_abi_in_force
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    try:
        if os.uname().machine != _ARCHITECTURE:
            raise SandboxUnavailable(f"unsupported architecture {os.uname().machine}")
        abi = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                           ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
        if abi < 1:
            raise SandboxUnavailable(f"Landlock unavailable ({errno.errorcode.get(ctypes.get_errno(), '?')})")
    except SandboxUnavailable:
        if required:
            raise
        return 0
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0),
                      ctypes.c_ulong(0)), "no_new_privs")
    _restrict_with_landlock(libc, abi)
    _check(libc.capset(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), (_CapData * 2)()),
           "capset")
    _forbid_syscalls(libc)
    _landlock_abi_in_force = abi
    return abi


def _restrict_with_landlock(libc: ctypes.CDLL, abi: int) -> None:
    """A ruleset that handles every right this ABI knows and allows none of them: no rule is added."""
    attr = _LandlockRulesetAttr(
        handled_access_fs=sum(bits for version, bits in _LANDLOCK_FS_RIGHTS.items() if version <= abi),
        handled_access_net=_LANDLOCK_NET_TCP if abi >= 4 else 0,
        scoped=_LANDLOCK_SCOPE_ALL if abi >= 6 else 0,
    )
    # An older kernel takes the whole structure as long as the fields it does not know are zero.
    size = ctypes.c_size_t(ctypes.sizeof(attr))
    ruleset = libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), size, ctypes.c_uint32(0))
    _check(ruleset, "landlock_create_ruleset")
    try:
        _check(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _forbid_syscalls(libc: ctypes.CDLL) -> None:
    """Install a seccomp filter: EPERM for _FORBIDDEN_SYSCALLS, death for another ABI's calls."""
    load, jump_eq, jump_ge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE|K, BPF_RET|K
    allow, deny, kill = 0x7FFF_0000, 0x0005_0000 | errno.EPERM, 0x8000_0000  # SECCOMP_RET_*
    numbers = sorted(set(_FORBIDDEN_SYSCALLS.values()))
    deny_at = 5 + len(numbers)  # index of the "deny" return; "kill" follows it (jumps are relative)
    kill_at = deny_at + 1
    program = [
        (load, 0, 0, 4),  # seccomp_data.arch
        (jump_eq, 0, kill_at - 2, _AUDIT_ARCH_X86_64),
        (load, 0, 0, 0),  # seccomp_data.nr
        (jump_ge, deny_at - 4, 0, _X32_SYSCALL_BIT),  # x32 calls: same arch value, other numbers
        *((jump_eq, deny_at - (4 + i + 1), 0, number) for i, number in enumerate(numbers)),
        (ret, 0, 0, allow),
        (ret, 0, 0, deny),
        (ret, 0, 0, kill),
    ]
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    prog = _SockFprog(len(program), filters)
    _check(libc.prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog),
                      ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")


def _check(result: int, what: str) -> None:
    if result < 0:
        raise SandboxUnavailable(f"{what} failed ({errno.errorcode.get(ctypes.get_errno(), '?')})")


# The child process: jobs -------------------------------------------------------------------------------


def run_job(job: dict[str, object], data: bytes) -> tuple[dict[str, object], bytes]:
    """One job's answer line and payload. Raises PdfRefused or MemoryError."""
    kind = job.get("job")
    if kind == "clean":
        max_size = job.get("max_size")
        if type(max_size) is not int or max_size < 1:
            raise ValueError("clean needs a positive integer max_size")
        normalised, pages = clean_pdf(data, max_size)
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
    """What this process can see and may use: environment, limits, directory, open files, sandbox."""
    libc = ctypes.CDLL(None, use_errno=True)
    limits = {
        name: resource.getrlimit(getattr(resource, name))[0]
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_CORE", "RLIMIT_FSIZE", "RLIMIT_NPROC")
    }
    capabilities = (_CapData * 2)()
    libc.capget(ctypes.byref(_CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)), capabilities)
    return {
        "env": dict(os.environ),
        "limits": limits,
        "cwd": os.getcwd(),
        "open_fds": [fd for fd in range(1024) if _is_open(fd)],  # /proc/self/fd is closed to us
        "no_new_privs": libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
        "seccomp": libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0),  # 2: a filter is installed
        "landlock_abi": _landlock_abi_in_force,
        "capabilities": [capabilities[0].effective, capabilities[1].effective],
    }


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or draw one PDF read from stdin.")
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    parser.add_argument("--sandbox", choices=("required", "optional"), default="required")
    options = parser.parse_args(argv)

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    extra: dict[str, object] = {}
    try:
        apply_limits(options.memory_mb, options.cpu_seconds)
        prepare()
        if not confine(required=options.sandbox == "required"):
            extra["unconfined"] = True
        sys.meta_path.insert(0, _LateImportWatcher)
        job = json.loads(stdin.readline(MAX_JOB_LINE))
        if not isinstance(job, dict):
            raise ValueError("the job line is not a JSON object")
        answer, payload = run_job(job, stdin.read())
    except SandboxUnavailable as error:  # before a byte of the document was read
        answer, payload = {"failed": "sandbox", "detail": str(error)[:200]}, b""
    except PdfRefused as refused:
        answer, payload = {"refused": refused.message}, b""
    except MemoryError:
        answer, payload = {"failed": "memory"}, b""
    except Exception as error:
        answer, payload = {"failed": type(error).__name__}, b""
    if _late_imports:
        # Whatever the library did without the module (refused the PDF as unreadable, decoded a
        # name differently), the answer is not the one an unconfined worker would give: fail loudly,
        # so that the parent logs it, rather than answer. The cure is to load it in prepare().
        answer, payload = {"failed": "import", "detail": ", ".join(_late_imports)[:200]}, b""
    stdout.write(json.dumps({**answer, **extra}).encode("utf-8") + b"\n")
    stdout.write(payload)
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
