"""Checks a customer's uploaded prescription (a photo or a PDF) before we store it.

The file comes from the public internet and holds health information, so everything here treats it
as hostile:

* The type is decided by the first bytes of the content, never by the filename or Content-Type.
* Images are decoded fully by Pillow (bomb and truncation checks on) and re-encoded from pixels, so
  EXIF (GPS included), ICC profiles, comments, text chunks and anything appended after the image
  (polyglots) are left behind.
* PDFs are never opened in this process. `pdf_worker` (run by `pdf_sandbox` in a child process with
  a time limit and a memory cap, an empty environment, and a sandbox that lets it open no file and
  no socket and start no process: see `pdf_worker` for exactly what it does and does not
  guarantee) parses them with pypdf, refuses active or hidden content (JavaScript, launch actions,
  attachments, media, XFA, form submission, links to other files), rewrites them page by page so
  that trailing data, incremental updates, metadata and the catalog are dropped, and checks that
  the rewritten file renders in PDFium. A PDF that takes longer or needs more memory than the
  limits allow is refused (`PdfTooDemanding`), and so is one whose rewritten copy is larger than
  MAX_BYTES (as unreadable). The worker's answer is read up to the largest size it can legitimately
  have, and checked again here: the child is treated as hostile too.

`validate_upload` raises `UploadRefused` and nothing else, whatever the bytes are; its `message` is
a sentence that can be shown to the customer as it is.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from PIL import Image, ImageFile, ImageOps

from shop.prescriptions import pdf_sandbox
from shop.prescriptions.pdf_sandbox import PdfLimits
from shop.prescriptions.pdf_worker import (
    MAX_PDF_PAGES,
    PDF_MAGIC,
    PDF_NO_SUCH_PAGE,
    PDF_UNREADABLE,
    png_size_bound,
)

__all__ = [
    "MAX_BYTES",
    "MAX_PDF_PAGES",
    "CleanFile",
    "PdfLimits",
    "PdfTooDemanding",
    "UploadRefused",
    "render_pdf_page",
    "validate_upload",
]

log = logging.getLogger(__name__)

MAX_BYTES: Final = 10 * 1024 * 1024  # 10 MB per file

# Image limits. 50 megapixels is more than any phone camera; the sides guard against images that
# decode fine but cannot be a photo of a sheet of paper (a 1 x 40000 strip, a 10 x 10 icon).
MAX_IMAGE_PIXELS: Final = 50_000_000
MIN_IMAGE_SIDE: Final = 32
MAX_IMAGE_SIDE: Final = 20_000
MAX_ASPECT_RATIO: Final = 20
JPEG_QUALITY: Final = 90

JPEG_MAGIC: Final = b"\xff\xd8\xff"
PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"

# The customer-facing sentences, one per reason (the PDF ones live in pdf_worker).
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
PDF_TOO_SLOW: Final = "This PDF could not be read in time. Please upload a photo or a simpler PDF."
PDF_TOO_BIG: Final = (
    "This PDF is too large or complex for us to read. Please upload a photo or a simpler PDF."
)

# warnings.catch_warnings() swaps process-wide state; serialise our own use of it.
_WARNINGS_LOCK = threading.Lock()


class UploadRefused(ValueError):
    """The upload is not accepted; `message` says why, in words the customer can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PdfTooDemanding(UploadRefused):
    """The PDF could not be read within the time or memory limits (`reason`: "time" or "memory")."""

    def __init__(self, reason: str) -> None:
        super().__init__(PDF_TOO_SLOW if reason == "time" else PDF_TOO_BIG)
        self.reason = reason


@dataclass(frozen=True)
class CleanFile:
    data: bytes  # what to store: the re-encoded image, or the normalised PDF
    content_type: str  # "image/jpeg" | "image/png" | "application/pdf"
    extension: str  # "jpg" | "png" | "pdf"
    pages: int  # 1 for images


def validate_upload(data: bytes, filename: str = "", *, limits: PdfLimits | None = None) -> CleanFile:
    """Check an uploaded prescription and return the cleaned copy to store.

    `filename` is accepted for the callers' convenience but never influences the decision: a
    customer's renamed file is judged by its content alone. `limits` bound the PDF worker; by
    default the app's PDF_RENDER_* settings.
    """
    del filename  # deliberately unused (see above); it is also not logged, as it may name the patient
    try:
        data = _as_bytes(data)
        if data.startswith(JPEG_MAGIC):
            return _clean_image(data, "JPEG")
        if data.startswith(PNG_MAGIC):
            return _clean_image(data, "PNG")
        if data.startswith(PDF_MAGIC):
            return _clean_pdf(data, limits)
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


def render_pdf_page(
    data: bytes, page_index: int, max_width: int = 1600, *, limits: PdfLimits | None = None
) -> bytes:
    """A PNG of one page of a PDF that `validate_upload` accepted, at most `max_width` pixels wide.

    Used to show the pharmacist the document without handing their browser the PDF itself. Drawn
    in the PDF worker, under the same limits as the upload check. Raises PdfTooDemanding when it
    takes too long or too much memory, UploadRefused when the page does not exist or the PDF
    cannot be drawn.
    """
    if not 16 <= max_width <= 10_000:
        raise ValueError(f"max_width must be between 16 and 10000, not {max_width}")  # caller's bug
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UploadRefused(PDF_UNREADABLE)
        data = bytes(data)
        if not data.startswith(PDF_MAGIC):
            raise UploadRefused(PDF_UNREADABLE)
        if isinstance(page_index, bool) or not isinstance(page_index, int) or page_index < 0:
            raise UploadRefused(PDF_NO_SUCH_PAGE)
        job: dict[str, object] = {"job": "render", "page": page_index, "max_width": max_width}
        answer = _run_pdf_job(job, data, limits, max_payload=png_size_bound(max_width))
        if not answer.payload.startswith(PNG_MAGIC):
            raise pdf_sandbox.JobFailed("the PDF worker's image is not a PNG")
        return answer.payload
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


def _clean_pdf(data: bytes, limits: PdfLimits | None) -> CleanFile:
    answer = _run_pdf_job({"job": "clean", "max_size": MAX_BYTES}, data, limits, max_payload=MAX_BYTES)
    if len(answer.payload) > MAX_BYTES:
        # The worker refuses such a copy itself; a larger one means it was not our worker's answer.
        log.warning("PDF worker's normalised copy is over %d bytes; refused", MAX_BYTES)
        raise UploadRefused(PDF_UNREADABLE)
    pages = answer.fields.get("pages")
    if type(pages) is not int or not 1 <= pages <= MAX_PDF_PAGES or not answer.payload.startswith(PDF_MAGIC):
        raise pdf_sandbox.JobFailed("the PDF worker's normalised copy does not look right")
    return CleanFile(answer.payload, "application/pdf", "pdf", pages=pages)


def _run_pdf_job(
    job: dict[str, object], data: bytes, limits: PdfLimits | None, *, max_payload: int
) -> pdf_sandbox.Answer:
    """The worker's answer to `job`; its refusals and the limits become UploadRefused."""
    try:
        answer = pdf_sandbox.run(job, data, limits or PdfLimits.from_config(), max_payload=max_payload)
    except pdf_sandbox.JobStopped as stopped:
        raise PdfTooDemanding(stopped.reason) from None
    if answer.refused is not None:
        raise UploadRefused(answer.refused)
    return answer
