"""Checks a customer's uploaded prescription (a photo or a PDF) before we store it.

The file comes from the public internet and holds health information, so everything here treats it
as hostile:

* The type is decided by the first bytes of the content, never by the filename or Content-Type.
* Images are decoded fully by Pillow (bomb and truncation checks on) and re-encoded from pixels, so
  EXIF (GPS included), ICC profiles, comments, text chunks and anything appended after the image
  (polyglots) are left behind.
* PDFs are parsed by pypdf, refused if they carry active or hidden content (JavaScript, launch
  actions, attachments, media, XFA, form submission, links to other files), then rewritten page by
  page so that trailing data, incremental updates, metadata and the catalog are dropped, and the
  rewritten file must open and render in PDFium.

`validate_upload` raises `UploadRefused` and nothing else, whatever the bytes are; its `message` is
a sentence that can be shown to the customer as it is.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Final

import pypdfium2 as pdfium
from PIL import Image, ImageFile, ImageOps
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

__all__ = [
    "MAX_BYTES",
    "MAX_PDF_PAGES",
    "CleanFile",
    "UploadRefused",
    "render_pdf_page",
    "validate_upload",
]

log = logging.getLogger(__name__)

MAX_BYTES: Final = 10 * 1024 * 1024  # 10 MB per file
MAX_PDF_PAGES: Final = 20

# Image limits. 50 megapixels is more than any phone camera; the sides guard against images that
# decode fine but cannot be a photo of a sheet of paper (a 1 x 40000 strip, a 10 x 10 icon).
MAX_IMAGE_PIXELS: Final = 50_000_000
MIN_IMAGE_SIDE: Final = 32
MAX_IMAGE_SIDE: Final = 20_000
MAX_ASPECT_RATIO: Final = 20
JPEG_QUALITY: Final = 90

# Upper bound on the PDF objects (indirect objects and nested dictionaries/arrays) we walk looking
# for active content; a genuine prescription has a few hundred at most.
MAX_PDF_OBJECTS: Final = 200_000
# The PDFium render check draws each page into a thumbnail no larger than this on either side.
CHECK_RENDER_SIDE: Final = 200

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC: Final = b"%PDF-"

# The customer-facing sentences, one per reason.
EMPTY: Final = "The file is empty."
TOO_LARGE: Final = "This file is larger than 10 MB. Please send a smaller photo or PDF."
WRONG_TYPE: Final = (
    "This is not a JPEG, PNG or PDF file. We accept photos (JPEG or PNG) and PDF documents only."
)
UNREADABLE: Final = (
    "We could not read this file. It may be damaged. Please send a clear photo (JPEG or PNG) or a PDF."
)
IMAGE_DAMAGED: Final = (
    "This image is damaged or incomplete, perhaps cut short during upload. Please try again, "
    "or take a new photo."
)
IMAGE_TOO_MANY_PIXELS: Final = (
    "This image is too large: it has more than 50 million pixels. Please send a smaller photo."
)
IMAGE_TOO_SMALL: Final = "This image is too small to read. Please send a clearer photo of your prescription."
IMAGE_ODD_SHAPE: Final = (
    "This image is too long or too narrow to be a photo of a prescription. Please send a normal photo."
)
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

# PDFium is not thread-safe and the app serves requests on several threads.
_PDFIUM_LOCK = threading.Lock()
# warnings.catch_warnings() swaps process-wide state; serialise our own use of it.
_WARNINGS_LOCK = threading.Lock()


class UploadRefused(ValueError):
    """The upload is not accepted; `message` says why, in words the customer can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CleanFile:
    data: bytes  # what to store: the re-encoded image, or the normalised PDF
    content_type: str  # "image/jpeg" | "image/png" | "application/pdf"
    extension: str  # "jpg" | "png" | "pdf"
    pages: int  # 1 for images


def validate_upload(data: bytes, filename: str = "") -> CleanFile:
    """Check an uploaded prescription and return the cleaned copy to store.

    `filename` is accepted for the callers' convenience but never influences the decision: a
    customer's renamed file is judged by its content alone.
    """
    del filename  # deliberately unused (see above); it is also not logged, as it may name the patient
    try:
        data = _as_bytes(data)
        if data.startswith(JPEG_MAGIC):
            return _clean_image(data, "JPEG")
        if data.startswith(PNG_MAGIC):
            return _clean_image(data, "PNG")
        if data.startswith(PDF_MAGIC):
            return _clean_pdf(data)
        raise UploadRefused(WRONG_TYPE)
    except UploadRefused:
        raise
    except Exception as error:  # the contract is "UploadRefused and nothing else"
        # Only the type is logged: library messages can quote bytes of the (confidential) file.
        log.warning("prescription upload refused after unexpected %s", type(error).__name__)
        raise UploadRefused(UNREADABLE) from None


def _as_bytes(data: object) -> bytes:
    """The upload as an immutable bytes object, refusing empty and oversized ones before parsing."""
    if not isinstance(data, bytes | bytearray | memoryview):
        # bytes(n) of an int would allocate n bytes; anything not binary is not a file upload.
        raise UploadRefused(UNREADABLE)
    size = memoryview(data).nbytes
    if size == 0:
        raise UploadRefused(EMPTY)
    if size > MAX_BYTES:
        raise UploadRefused(TOO_LARGE)  # before any parsing, so size bounds all the work below
    # A copy, so that a bytearray cannot change under us between the checks and the parsing.
    return bytes(data)


def render_pdf_page(data: bytes, page_index: int, max_width: int = 1600) -> bytes:
    """A PNG of one page of a PDF that `validate_upload` accepted, at most `max_width` pixels wide.

    Used to show the pharmacist the document without handing their browser the PDF itself.
    Raises UploadRefused when the page does not exist or the PDF cannot be drawn.
    """
    if not 16 <= max_width <= 10_000:
        raise ValueError(f"max_width must be between 16 and 10000, not {max_width}")  # caller's bug
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UploadRefused(PDF_UNREADABLE)
        data = bytes(data)
        if not data.startswith(PDF_MAGIC):
            raise UploadRefused(PDF_UNREADABLE)
        with _PDFIUM_LOCK, _pdfium_document(data) as document:
            count = len(document)
            if isinstance(page_index, bool) or not isinstance(page_index, int) or not 0 <= page_index < count:
                raise UploadRefused(PDF_NO_SUCH_PAGE)
            # Portrait pages come out at max_width; very tall pages are capped at twice that height.
            image = _render_page(document, page_index, max_width, 2 * max_width)
        return _encode(image, "PNG", optimize=False)
    except UploadRefused:
        raise
    except Exception as error:  # same contract as validate_upload
        log.warning("prescription PDF page render failed with %s", type(error).__name__)
        raise UploadRefused(PDF_UNREADABLE) from None


# Images ------------------------------------------------------------------------------------------


def _clean_image(data: bytes, pillow_format: str) -> CleanFile:
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched this on process-wide; we would then accept half-uploaded images. Fail
        # closed and loudly rather than quietly store damaged prescriptions.
        log.error("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; refusing image uploads until it is off")
        raise UploadRefused(UNREADABLE)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # Pillow warns (rather than raises) for images between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # formats= restricts Pillow to the decoder the magic bytes chose: no other plugin sees it.
            image = Image.open(BytesIO(data), formats=[pillow_format])
        _check_dimensions(image.size)  # from the header alone, before a single pixel is decoded
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRefused(IMAGE_TOO_MANY_PIXELS) from None
    except UploadRefused:
        raise
    except Exception:  # any decoder failure (truncated, corrupt, bad CRC, zlib...)
        raise UploadRefused(IMAGE_DAMAGED) from None

    image = _apply_orientation(image)
    _check_dimensions(image.size)

    if pillow_format == "JPEG":
        pixels = image if image.mode in ("L", "RGB") else image.convert("RGB")  # CMYK, YCbCr, ...
        content_type, extension = "image/jpeg", "jpg"
        save_options: dict[str, object] = {"quality": JPEG_QUALITY}
    else:
        pixels = _png_pixels(image)
        content_type, extension = "image/png", "png"
        save_options = {"optimize": False}  # optimize tries every filter: slow, and size is not an issue

    return CleanFile(_encode(pixels, pillow_format, **save_options), content_type, extension, pages=1)


def _check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise UploadRefused(IMAGE_TOO_MANY_PIXELS)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise UploadRefused(IMAGE_TOO_SMALL)
    if max(width, height) > MAX_IMAGE_SIDE or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise UploadRefused(IMAGE_ODD_SHAPE)


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Turn the pixels the way the EXIF orientation tag says, since the tag itself is dropped."""
    try:
        rotated = ImageOps.exif_transpose(image)
    except Exception:
        # A damaged EXIF block should not cost the customer the upload: EXIF is thrown away anyway,
        # the photo just keeps the orientation it was stored in.
        return image
    return rotated if rotated is not None else image


def _png_pixels(image: Image.Image) -> Image.Image:
    """Bring a decoded PNG to a mode the re-encode handles plainly: L, LA->RGBA, RGB or RGBA."""
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" in image.info:
        return image.convert("RGBA")  # a tRNS colour key: keep it as alpha, since .info is dropped
    if mode in ("L", "RGB", "RGBA"):
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grey: scale to 8 bits (a plain convert("L") would clip nearly everything to white).
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode == "1":
        return image.convert("L")
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    # LA, La, RGBa, PA and anything else Pillow might hand us: keep transparency, lose nothing visible.
    return image.convert("RGBA")


def _encode(image: Image.Image, pillow_format: str, **options: object) -> bytes:
    """Encode the pixels alone.

    Pillow's encoders copy some metadata from the image's .info by default (JPEG comments, ICC
    profiles, XMP...), so the pixels are first pasted into a brand-new image, which has none.
    """
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    output = BytesIO()
    clean.save(output, format=pillow_format, **options)
    return output.getvalue()


# PDFs --------------------------------------------------------------------------------------------


def _clean_pdf(data: bytes) -> CleanFile:
    # Cheap second net first: forbidden names visible in the raw bytes outside stream data.
    _raw_scan(data)
    try:
        reader = PdfReader(BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise UploadRefused(PDF_ENCRYPTED)
        _walk_objects(reader)  # the main net: every object reachable from the trailer
        page_count = len(reader.pages)
        if page_count == 0:
            raise UploadRefused(PDF_NO_PAGES)
        if page_count > MAX_PDF_PAGES:
            raise UploadRefused(PDF_TOO_MANY_PAGES)
        # Every page needs a /MediaBox (inherited ones are copied in by pypdf). Its absence means
        # the page dictionary did not parse and lenient pypdf kept only the part before the damage;
        # storing that would silently turn a prescription page into a blank one.
        if any("/MediaBox" not in page for page in reader.pages):
            raise UploadRefused(PDF_UNREADABLE)
        normalised = _normalise(reader)
    except UploadRefused:
        raise
    except Exception:  # pypdf raises many types (PdfReadError, KeyError, zlib.error...)
        raise UploadRefused(PDF_UNREADABLE) from None

    # Check what we will store, not what was sent: the rewritten file must open in PDFium (the
    # renderer the pharmacist's view uses) with the same pages, and each page must draw.
    try:
        with _PDFIUM_LOCK, _pdfium_document(normalised) as document:
            if len(document) != page_count:
                raise UploadRefused(PDF_UNREADABLE)
            for index in range(page_count):
                _render_page(document, index, CHECK_RENDER_SIDE, CHECK_RENDER_SIDE)
    except UploadRefused:
        raise
    except Exception:  # PdfiumError, ValueError for absurd page sizes...
        raise UploadRefused(PDF_UNREADABLE) from None
    return CleanFile(normalised, "application/pdf", "pdf", pages=page_count)


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
                raise UploadRefused(message)


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
            raise UploadRefused(PDF_TOO_COMPLEX)
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
            raise UploadRefused(message)


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
            raise UploadRefused(PDF_UNREADABLE)
        # A hair under the exact fit: PDFium rounds the bitmap size up, which would add a pixel.
        scale = min(max_width / width, max_height / height) * 0.999_999
        bitmap = page.render(scale=scale, may_draw_forms=False)
        try:
            return bitmap.to_pil().copy()  # copy: to_pil shares the buffer that close() frees
        finally:
            bitmap.close()
    finally:
        page.close()
