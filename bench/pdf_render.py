"""How much latency the PDF worker's process boundary adds to an upload check and a page render.

Usage: .venv/bin/python bench/pdf_render.py [--runs 20]
For two typical prescriptions (a one-page printed e-prescription, and a three-page scan at 300 dpi)
it times the same checks run in this process (pdf_worker's functions called directly, as before)
and through the sandbox (a fresh limited and confined child per job, as the app now does), plus an
empty job (start the child, load and warm up the libraries, confine it, answer, exit) and, for
comparison, the same empty job with the sandbox skipped (`confine` with Landlock reported missing is
not something we can ask for, so this times the child with `prepare` and `confine` left out, as the
worker was before them). Prints medians and 90th percentiles in milliseconds; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw

from shop.prescriptions import pdf_sandbox, pdf_worker
from shop.prescriptions.pdf_sandbox import PdfLimits
from shop.prescriptions.validation import render_pdf_page, validate_upload


def printed_prescription() -> bytes:
    """One A4 page of text, as a prescribing system prints it (a hand-built PDF with its xref)."""
    content = b"\n".join(
        b"BT /F1 11 Tf 72 %d Td (Line %d: naltrexone 50 mg, one tablet daily, 30 tablets) Tj ET"
        % (770 - 16 * n, n) for n in range(40)
    )
    return pdf_worker.one_page_pdf(content, b"[0 0 595 842]")


def scanned_prescription(pages: int = 3) -> bytes:
    """`pages` A4 pages scanned at 300 dpi: a 2480 x 3508 JPEG each, with ruled text-like marks."""
    images = []
    for number in range(pages):
        image = Image.new("L", (2480, 3508), 245)
        draw = ImageDraw.Draw(image)
        for row in range(60):
            y = 200 + row * 52
            draw.rectangle((180, y, 180 + 900 + (row * 137 + number * 71) % 1200, y + 22), fill=40)
        images.append(image)
    out = BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=300, quality=80)
    return out.getvalue()


# The worker as it was before `prepare` and `confine`: imports, limits, answer.
BARE_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import pdf_worker
pdf_worker.apply_limits(512, 15)
sys.stdin.buffer.read()
sys.stdout.buffer.write(b'{"ok": true, "size": 0, "pages": 0}\\n')
"""


def bare_child(limits: PdfLimits) -> None:
    subprocess.run(
        [sys.executable, "-I", "-B", "-c", BARE_CHILD, str(pdf_sandbox.WORKER.parent)],
        input=b'{"job": "probe"}\n', capture_output=True, env={}, cwd="/", timeout=limits.timeout_seconds,
        check=True,
    )


def timed(action: Callable[[], object], runs: int) -> list[float]:
    action()  # warm the page cache and the imports
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"median {statistics.median(samples):7.1f} ms   p90 {p90:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    limits = PdfLimits()
    print(f"limits: {limits.timeout_seconds:g} s, {limits.memory_mb} MB; {runs} runs each\n")

    empty = timed(lambda: pdf_sandbox.run({"job": "probe"}, b"", limits, max_payload=0), runs)
    print(f"{'empty job (start, warm up, confine, answer, exit)':58} {summary(empty)}")
    bare = timed(lambda: bare_child(limits), runs)
    added = statistics.median(empty) - statistics.median(bare)
    print(f"{'empty job without warm-up or sandbox':58} {summary(bare)}   the two add {added:6.1f} ms\n")

    documents = [("printed, 1 page", printed_prescription()), ("scanned, 3 pages", scanned_prescription())]
    for name, data in documents:
        clean, _pages = pdf_worker.clean_pdf(data)
        rows = [
            ("upload check", lambda d=data: pdf_worker.clean_pdf(d),
             lambda d=data: validate_upload(d, limits=limits)),
            ("page render, 1600 px", lambda c=clean: pdf_worker.render_page_png(c, 0, 1600),
             lambda c=clean: render_pdf_page(c, 0, limits=limits)),
        ]
        print(f"{name} ({len(data) / 1024:.0f} KB)")
        for label, here, isolated in rows:
            in_process, in_child = timed(here, runs), timed(isolated, runs)
            added = statistics.median(in_child) - statistics.median(in_process)
            print(f"  {label + ', in process':56} {summary(in_process)}")
            print(f"  {label + ', in the child':56} {summary(in_child)}   adds {added:6.1f} ms")
        print()


if __name__ == "__main__":
    main()
