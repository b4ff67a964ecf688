"""Helpers of the report tests: a CJK font for the Chinese PDF (Debian's
fonts-wqy-microhei, installed with apt-get when no CJK font is found and the tests run
as root, as tests/browser_support.py installs chromium), PDF pages as PNG pictures
(pypdfium2, written with zlib: no imaging library needed), the text of a PDF (pypdf),
and the cells of an xlsx sheet read back with zipfile and the XML parser (no openpyxl)."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

__all__ = ["ensure_cjk_font", "pdf_pages_png", "pdf_text", "xlsx_formulas", "xlsx_sheet"]

CJK_FONT_PACKAGE = "fonts-wqy-microhei"  # 4 MB, the smallest complete CJK font
APT_TIMEOUT_S = 900.0


def ensure_cjk_font() -> str | None:
    """None when the report finds a CJK font (installing Debian's fonts-wqy-microhei
    with apt-get if needed and possible); else why not, for a skip."""
    from zerocarbon.accounts.report.pdf import ReportFontError, find_cjk_font

    try:
        find_cjk_font()
        return None
    except ReportFontError:
        pass
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return f"no CJK font, and cannot install {CJK_FONT_PACKAGE} (needs apt-get as root)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [apt, "install", "-y", "--no-install-recommends", CJK_FONT_PACKAGE]
    for args in (install, [apt, "update"], install):
        subprocess.run(args, env=env, capture_output=True, timeout=APT_TIMEOUT_S, check=False)
        try:
            find_cjk_font()
            return None
        except ReportFontError:
            continue
    return f"`apt-get install {CJK_FONT_PACKAGE}` did not give a CJK font"


_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB array (height, width, 3) as a PNG file."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def pdf_pages_png(pdf: bytes, out_dir: Path, stem: str, scale: float = 1.5) -> list[Path]:
    """Render each page of a PDF to ``out_dir/<stem>-<n>.png``; returns the paths."""
    import pypdfium2 as pdfium

    out_dir.mkdir(parents=True, exist_ok=True)
    doc = pdfium.PdfDocument(pdf)
    paths = []
    for i in range(len(doc)):
        bitmap = doc[i].render(scale=scale, rev_byteorder=True)
        arr = bitmap.to_numpy()[:, :, :3].copy()
        path = out_dir / f"{stem}-{i + 1}.png"
        path.write_bytes(_png(np.ascontiguousarray(arr)))
        paths.append(path)
    doc.close()
    return paths


def pdf_text(pdf: bytes) -> str:
    """The text of every page of a PDF, pages joined by newlines."""
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _col(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    assert letters is not None
    n = 0
    for ch in letters.group(0):
        n = n * 26 + ord(ch) - 64
    return n - 1


def xlsx_sheet(data: bytes, name: str) -> list[list[object]]:
    """The cells of sheet ``name`` as rows of values (numbers as float, strings as str,
    formulas as their cached value; a formula's text as ``"=<formula>"`` when it has no
    cached value)."""
    z = zipfile.ZipFile(io.BytesIO(data))
    shared: list[str] = []
    if "xl/sharedStrings.xml" in z.namelist():
        root = ET.fromstring(z.read("xl/sharedStrings.xml"))
        for si in root.findall("m:si", _NS):
            shared.append("".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")))
    book = ET.fromstring(z.read("xl/workbook.xml"))
    rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels}
    sheet = next(s for s in book.iter(f"{{{_NS['m']}}}sheet") if s.get("name") == name)
    target = str(targets[sheet.get(_REL)])
    root = ET.fromstring(z.read("xl/" + target.removeprefix("/xl/")))
    rows: list[list[object]] = []
    for row in root.iter(f"{{{_NS['m']}}}row"):
        cells: list[object] = []
        for c in row.findall("m:c", _NS):
            i = _col(str(c.get("r")))
            while len(cells) < i:
                cells.append(None)
            v = c.find("m:v", _NS)
            f = c.find("m:f", _NS)
            kind = c.get("t")
            value: object
            if kind == "s" and v is not None:
                value = shared[int(v.text or 0)]
            elif kind == "inlineStr":
                value = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            elif kind == "str" and v is not None:
                value = v.text
            elif v is not None and v.text is not None:
                value = float(v.text)
            elif f is not None:
                value = "=" + (f.text or "")
            else:
                value = None
            cells.append(value)
        rows.append(cells)
    return rows


def xlsx_formulas(data: bytes, name: str) -> dict[str, str]:
    """Cell reference -> formula text of sheet ``name``."""
    z = zipfile.ZipFile(io.BytesIO(data))
    book = ET.fromstring(z.read("xl/workbook.xml"))
    rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels}
    sheet = next(s for s in book.iter(f"{{{_NS['m']}}}sheet") if s.get("name") == name)
    target = str(targets[sheet.get(_REL)])
    root = ET.fromstring(z.read("xl/" + target.removeprefix("/xl/")))
    out = {}
    for c in root.iter(f"{{{_NS['m']}}}c"):
        f = c.find("m:f", _NS)
        if f is not None:
            out[str(c.get("r"))] = f.text or ""
    return out
