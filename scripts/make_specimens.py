"""Draw the emulator's specimen cards: synthetic, clearly fake, with their ground truth embedded.

Run from the repository root (needs Pillow, from the ``emulator`` extra):

    python scripts/make_specimens.py

Writes ``cvekyc_async/emulator/specimens/``. Every name, number and address is invented; every
image says SPECIMEN / MẪU across it. Each image carries the documents it shows (type, fields,
confidences, field boxes, validity) as JSON behind a marker, in a JPEG comment, a PNG text chunk,
or a comment line per page after a PDF's end, and the emulator answers from that.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from cvekyc_async.emulator._fake import Person, card_truth, fake_person
from cvekyc_async.emulator._truth import encode_truth

OUT = Path(__file__).resolve().parent.parent / "cvekyc_async" / "emulator" / "specimens"
W, H = 640, 404
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font(size: int, bold: bool = False, mono: bool = False) -> Font:
    name = "DejaVuSansMono.ttf" if mono else ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    path = FONT_DIR / name
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


LABELS = {
    "id": "Số / No.:",
    "name": "Họ và tên / Full name:",
    "dob": "Ngày sinh / Date of birth:",
    "gender": "Giới tính / Sex:",
    "nationality": "Quốc tịch / Nationality:",
    "ethnicity": "Dân tộc / Ethnicity:",
    "hometown": "Quê quán / Place of origin:",
    "address": "Nơi thường trú / Place of residence:",
    "due_date": "Có giá trị đến / Date of expiry:",
    "issue_date": "Ngày cấp / Date of issue:",
    "issued_at": "Nơi cấp / Issued by:",
    "religious": "Tôn giáo / Religion:",
    "sur_name": "Họ / Surname:",
    "given_name": "Tên / Given names:",
    "country": "Mã nước / Code:",
    "person_number": "Số định danh / Personal No.:",
    "birth_place": "Nơi đăng ký khai sinh / Place of birth:",
}
TITLES = {
    "9_id_card_front": "GIẤY CHỨNG MINH NHÂN DÂN",
    "9_id_card_back": "CHỨNG MINH NHÂN DÂN - MẶT SAU",
    "12_id_card_front": "CĂN CƯỚC CÔNG DÂN",
    "12_id_card_back": "CĂN CƯỚC CÔNG DÂN - MẶT SAU",
    "chip_id_card_front": "CĂN CƯỚC CÔNG DÂN (GẮN CHIP)",
    "chip_id_card_back": "CĂN CƯỚC CÔNG DÂN (GẮN CHIP) - MẶT SAU",
    "chip_id_card_2024_front": "CĂN CƯỚC / IDENTITY CARD",
    "chip_id_card_2024_back": "CĂN CƯỚC - MẶT SAU",
    "passport": "HỘ CHIẾU / PASSPORT",
}
COLOURS = {
    "9_id_card": (205, 226, 240),
    "12_id_card": (222, 236, 214),
    "chip_id_card": (232, 226, 246),
    "chip_id_card_2024": (214, 230, 240),
    "passport": (236, 222, 214),
}
# Fields drawn on each side, in order; the rest of the truth (codes, parts) is not printed.
DRAWN = {
    "9_id_card_front": ("id", "name", "dob", "hometown", "address"),
    "9_id_card_back": ("ethnicity", "religious", "issue_date", "issued_at"),
    "12_id_card_front": (
        "id",
        "name",
        "dob",
        "gender",
        "nationality",
        "ethnicity",
        "hometown",
        "address",
        "due_date",
    ),
    "12_id_card_back": ("issue_date", "issued_at"),
    "chip_id_card_front": (
        "id",
        "name",
        "dob",
        "gender",
        "nationality",
        "hometown",
        "address",
        "due_date",
    ),
    "chip_id_card_back": ("issue_date", "issued_at"),
    # The 2024 card (Law on Identification 2023): fewer fields on the front, residence, place
    # of birth registration and both dates on the back.
    "chip_id_card_2024_front": ("id", "name", "dob", "gender", "nationality"),
    "chip_id_card_2024_back": ("address", "birth_place", "issue_date", "due_date"),
    "passport": (
        "id",
        "sur_name",
        "given_name",
        "dob",
        "gender",
        "nationality",
        "person_number",
        "due_date",
    ),
}


def check_digit(text: str) -> str:
    """ICAO 9303 check digit."""
    weights = (7, 3, 1)
    total = 0
    for i, ch in enumerate(text):
        if ch.isdigit():
            value = int(ch)
        elif ch.isalpha():
            value = ord(ch) - 55
        else:
            value = 0
        total += value * weights[i % 3]
    return str(total % 10)


def yymmdd(text: str) -> str:
    try:
        d = dt.datetime.strptime(text, "%d/%m/%Y").date()
    except ValueError:
        return "<<<<<<"
    return d.strftime("%y%m%d")


def chip_mrz(info: dict[str, Any]) -> list[str]:
    doc = info["document_number"]
    line1 = f"IDVNM{doc}{check_digit(doc)}{info['person_number']}".ljust(30, "<")[:30]
    sex = "M" if info["gender"] == "Nam" else "F"
    dob, exp = yymmdd(info["dob"]), yymmdd(info["due_date"])
    line2 = f"{dob}{check_digit(dob)}{sex}{exp}{check_digit(exp)}VNM".ljust(29, "<")
    line2 += check_digit(line1[5:30] + line2[0:7] + line2[8:15] + line2[18:29])
    name = f"{info['sur_name']}<<{info['given_name'].replace(' ', '<')}"
    return [line1, line2, name.ljust(30, "<")[:30]]


def passport_mrz(info: dict[str, Any]) -> list[str]:
    name = f"{info['sur_name']}<<{info['given_name'].replace(' ', '<')}"
    line1 = f"P<VNM{name}".ljust(44, "<")[:44]
    number = info["id"].ljust(9, "<")
    sex = "M" if info["gender"] == "Nam" else "F"
    dob, exp = yymmdd(info["dob"]), yymmdd(info["due_date"])
    personal = info["person_number"].ljust(14, "<")
    line2 = (
        f"{number}{check_digit(number)}VNM{dob}{check_digit(dob)}{sex}{exp}{check_digit(exp)}"
        f"{personal}{check_digit(personal)}"
    )
    line2 += check_digit(line2[0:10] + line2[13:20] + line2[21:43])
    return [line1, line2]


def draw_card(
    kind: str, person: Person, rng: random.Random, *, valid: str = "True", warning: str = ""
) -> tuple[Image.Image, dict[str, Any]]:
    """One card side as an image, and the document the service would report for it."""
    info = card_truth(kind, person)
    family = "passport" if kind == "passport" else kind.rsplit("_", 1)[0]
    img = Image.new("RGB", (W, H), COLOURS[family])
    d = ImageDraw.Draw(img)
    # A soft pattern so that the JPEG looks like a photo of a card rather than flat colour.
    for y in range(0, H, 6):
        shade = tuple(max(0, c - 8 + (y % 24) // 6) for c in COLOURS[family])
        d.line([(0, y), (W, y)], fill=shade, width=1)
    d.rounded_rectangle([4, 4, W - 5, H - 5], radius=18, outline=(90, 90, 120), width=3)
    d.text(
        (20, 14), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", font=font(15, bold=True), fill=(40, 40, 60)
    )
    d.text((20, 34), "Độc lập - Tự do - Hạnh phúc", font=font(13), fill=(40, 40, 60))
    d.text((20, 56), TITLES[kind], font=font(18, bold=True), fill=(170, 20, 20))
    front = kind.endswith("front") or kind == "passport"
    if front:
        d.rectangle([20, 100, 140, 260], fill=(200, 200, 205), outline=(120, 120, 130))
        d.ellipse([50, 120, 110, 180], fill=(160, 160, 170))
        d.rectangle([45, 185, 115, 255], fill=(160, 160, 170))
        x0 = 155
    else:
        x0 = 20
    y = 86
    value_font = font(14, bold=True)
    for field in DRAWN[kind]:
        label = LABELS[field]
        d.text((x0, y), label, font=font(11), fill=(70, 70, 90))
        y += 14
        text = str(info[field])
        box = d.textbbox((x0, y), text, font=value_font)
        if box[2] > W - 20:  # long addresses: smaller type
            small = font(11, bold=True)
            box = d.textbbox((x0, y), text, font=small)
            d.text((x0, y), text, font=small, fill=(10, 10, 30))
        else:
            d.text((x0, y), text, font=value_font, fill=(10, 10, 30))
        info[f"{field}_box"] = list(box)
        info[f"{field}_confidence"] = round(rng.uniform(0.9, 0.995), 4)
        y = box[3] + 5
    if kind in ("chip_id_card_back", "chip_id_card_2024_back"):
        info["mrz_confidence"] = round(rng.uniform(0.9, 0.99), 4)
        mrz = chip_mrz(info)
    elif kind == "passport":
        mrz = passport_mrz(info)
        info["confidence"] = round(rng.uniform(0.9, 0.99), 4)
    else:
        mrz = []
    if mrz:
        size = 15 if len(mrz[0]) <= 30 else 12
        my = H - 20 - len(mrz) * (size + 4)
        for line in mrz:
            d.text((20, my), line, font=font(size, mono=True), fill=(0, 0, 0))
            my += size + 4
    watermark(img)
    doc: dict[str, Any] = {"type": kind, "info": info, "box": [0, 0, W, H]}
    doc["valid"] = valid
    doc["invalidMessage"] = warning or "Successful"
    if warning:
        doc["invalidCode"] = "1"
    return img, doc


def watermark(img: Image.Image) -> None:
    layer = Image.new("L", (W, H), 0)
    ImageDraw.Draw(layer).text(
        (W // 2, H // 2), "MẪU · SPECIMEN · FAKE", font=font(40, bold=True), fill=90, anchor="mm"
    )
    layer = layer.rotate(18, resample=Image.Resampling.BICUBIC)
    red = Image.new("RGB", (W, H), (200, 30, 30))
    img.paste(red, (0, 0), layer)


def save_jpeg(img: Image.Image, docs: list[dict[str, Any]], name: str) -> None:
    img.save(OUT / name, "JPEG", quality=55, optimize=True, comment=encode_truth(docs))


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = random.Random(20261125)
    cmnd = fake_person(11, gender="Nữ", dob=dt.date(1984, 7, 9), issue_date=dt.date(2012, 5, 3))
    cccd = fake_person(
        22, gender="Nữ", dob=dt.date(1962, 12, 31), issue_date=dt.date(2021, 3, 15)
    )  # issued at 58: no expiry
    chip = fake_person(33, gender="Nam", dob=dt.date(2004, 2, 29), issue_date=dt.date(2022, 8, 1))
    passport = fake_person(
        44, gender="Nam", dob=dt.date(1990, 11, 2), issue_date=dt.date(2019, 6, 20)
    )
    screen = fake_person(55, gender="Nữ", dob=dt.date(1999, 1, 15), issue_date=dt.date(2022, 6, 1))
    # A 2024 card issued at 29: due at 40 (Law 26/2023/QH15, Art. 21).
    card2024 = fake_person(
        66, gender="Nữ", dob=dt.date(1995, 3, 12), issue_date=dt.date(2024, 10, 1)
    )

    sides: dict[str, tuple[Image.Image, dict[str, Any]]] = {}
    for name, kind, person in (
        ("cmnd_front", "9_id_card_front", cmnd),
        ("cmnd_back", "9_id_card_back", cmnd),
        ("cccd_front", "12_id_card_front", cccd),
        ("cccd_back", "12_id_card_back", cccd),
        ("chip_front", "chip_id_card_front", chip),
        ("chip_back", "chip_id_card_back", chip),
        ("passport", "passport", passport),
        ("card2024_front", "chip_id_card_2024_front", card2024),
        ("card2024_back", "chip_id_card_2024_back", card2024),
    ):
        sides[name] = draw_card(kind, person, rng)
    for name, (img, doc) in sides.items():
        if name == "cccd_back":
            png = img.quantize(colors=48).convert("RGB").quantize(colors=48)
            meta = PngInfo()
            meta.add_text("cvekyc", encode_truth([doc]).decode("ascii"))
            png.save(OUT / f"{name}.png", "PNG", optimize=True, pnginfo=meta)
        else:
            save_jpeg(img, [doc], f"{name}.jpg")

    warn = "Photo contains sign of being taken through an electronic screen"
    img, doc = draw_card("chip_id_card_front", screen, rng, valid="False", warning=warn)
    save_jpeg(img, [doc], "screen_photo.jpg")

    blank = Image.new("RGB", (W, H), (236, 236, 232))
    ImageDraw.Draw(blank).text(
        (W // 2, H // 2), "(no document)", font=font(20), fill=(150, 150, 150), anchor="mm"
    )
    save_jpeg(blank, [], "blank.jpg")

    # Both sides of the chip card photographed side by side: the OCR endpoint reports two.
    page = Image.new("RGB", (W * 2 + 60, H + 40), (250, 250, 250))
    docs = []
    for i, key in enumerate(("chip_front", "chip_back")):
        side, doc = sides[key]
        x = 20 + i * (W + 20)
        page.paste(side, (x, 20))
        moved = dict(doc)
        moved["box"] = [x, 20, x + W, 20 + H]
        docs.append(moved)
    page = page.resize((page.width * 2 // 3, page.height * 2 // 3))
    for doc in docs:
        doc["box"] = [v * 2 // 3 for v in doc["box"]]
    save_jpeg(page, docs, "two_sides.jpg")

    # A two-page scan: CMND front then back, one document per page.
    pdf = io.BytesIO()
    front_img, front_doc = sides["cmnd_front"]
    back_img, back_doc = sides["cmnd_back"]
    front_img.save(pdf, "PDF", save_all=True, append_images=[back_img], resolution=100, quality=50)
    trailer = b"".join(b"%" + encode_truth([doc]) + b"\n" for doc in (front_doc, back_doc))
    (OUT / "scan.pdf").write_bytes(pdf.getvalue() + trailer)

    total = 0
    for path in sorted(OUT.iterdir()):
        total += path.stat().st_size
        print(f"{path.name:20} {path.stat().st_size:>8,} bytes")
    print(f"{'total':20} {total:>8,} bytes")


if __name__ == "__main__":
    main()
