"""Small inputs and realistic answers shared by the tests.

The answers follow what the service sends: ``errorCode`` as a string, ``valid`` as ``"True"`` /
``"False"``, confidences as numbers or strings, and fields the docs do not list.
"""

from __future__ import annotations

import base64
import json
from typing import Any

# A real 16x12 JPEG: the emulator opens what it is sent. Bytes appended to it (tests that need
# many distinct images) are ignored by image readers. The other formats are only headers: the
# client sniffs the first bytes, and the service is mocked where they are sent.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABsSFBcUERsXFhceHBsgKEIrKCUlKFE6PTBCYFVlZF9VXVtqeJmBanGQ"
    "c1tdhbWGkJ6jq62rZ4C8ybqmx5moq6T/2wBDARweHigjKE4rK06kbl1upKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSk"
    "pKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKT/wAARCAAMABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAA"
    "AAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAk"
    "M2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKT"
    "lJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hp"
    "anN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk"
    "5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDRooorMs//2Q=="
)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\x01\x02\x03" * 100
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32

API_KEY = "test-key-1234"
API_SECRET = "s3cr3t-do-not-leak-9f8e7d"
BASE_URL = "https://api.test"

CHIP_FRONT: dict[str, Any] = {
    "type": "chip_id_card_front",
    "valid": "True",
    "invalidMessage": "Successful",
    "info": {
        "id": "001099012345",
        "id_confidence": 0.9987,
        "id_box": [120, 80, 410, 118],
        "name": "NGUYỄN VĂN MẪU",
        "name_confidence": "0.97",
        "dob": "15/04/1999",
        "dob_confidence": 0.99,
        "gender": "Nam",
        "nationality": "Việt Nam",
        "hometown": "Xã Mẫu Sơn, Huyện Thử, Hà Nội",
        "address": "Số 1 Phố Mẫu, Phường Thử, Quận Ba Đình, Hà Nội",
        "address_town": "Hà Nội",
        "address_town_code": "01",
        "address_district": "Quận Ba Đình",
        "address_district_code": "001",
        "address_ward": "Phường Thử",
        "address_ward_code": "00004",
        "due_date": "15/04/2024",
        "image": "",
        "some_new_field": {"nested": True},
    },
}

CHIP_BACK: dict[str, Any] = {
    "type": "chip_id_card_back",
    "valid": "True",
    "invalidMessage": "",
    "info": {
        "issue_date": "10/07/2021",
        "issued_at": "CỤC TRƯỞNG CỤC CẢNH SÁT QUẢN LÝ HÀNH CHÍNH VỀ TRẬT TỰ XÃ HỘI",
        "country": "VNM",
        "document_number": "012345678",
        "person_number": "001099012345",
        "dob": "15/04/1999",
        "gender": "Nam",
        "due_date": "15/04/2024",
        "nationality": "VNM",
        "sur_name": "NGUYEN",
        "given_name": "VAN MAU",
        "mrz_confidence": "0.95",
    },
}

CMND_FRONT: dict[str, Any] = {
    "type": "9_id_card_front",
    "valid": "False",
    "invalidMessage": "The picture is a photocopy version of the id card",
    "info": {
        "id": "012345678",
        "id_confidence": "0.99",
        "name": "TRẦN THỊ THỬ",
        "dob": "01/01/1980",
        "hometown": "Nam Định",
        "address": "Hà Nội",
        "hometown_town_code": 36,
    },
}

CMND_BACK: dict[str, Any] = {
    "type": "9_id_card_back",
    "valid": "True",
    "invalidMessage": "",
    "invalidCode": "0",
    "info": {
        "ethnicity": "Kinh",
        "religious": "Không",
        "issue_date": "12/03/2010",
        "issued_at": "CA Hà Nội",
        "issue_date_confidence": 0.91,
    },
}

CCCD_FRONT: dict[str, Any] = {
    "type": "12_id_card_front",
    "valid": "False",
    "invalidMessage": "Photo contains sign of being taken through an electronic screen",
    "invalidCode": 1,
    "info": {
        "id": "079200001234",
        "name": "LÊ VĂN MẪU",
        "dob": "29/02/2000",
        "gender": "Nam",
        "nationality": "Việt Nam",
        "ethnicity": "Kinh",
        "due_date": "29/02/2025",
        "ethnicity_confidence": 0.88,
    },
}

CCCD_BACK: dict[str, Any] = {
    "type": "12_id_card_back",
    "valid": "True",
    "invalidMessage": "",
    "info": {"issue_date": "01/06/2019", "issued_at": "CỤC TRƯỞNG CỤC CẢNH SÁT ĐKQL CƯ TRÚ"},
}

PASSPORT: dict[str, Any] = {
    "type": "passport",
    "valid": "False",
    "invalidMessage": "The mrzcode on the passport is incorrectly formatted",
    "info": {
        "id": "C1234567",
        "sur_name": "PHAM",
        "given_name": "THI MAU",
        "dob": "03/09/1992",
        "gender": "Nữ",
        "country": "VNM",
        "nationality": "VIỆT NAM",
        "due_date": "03/09/2032",
        "person_number": "036192001234",
        "confidence": "0.93",
    },
}

DRIVING_LICENSE: dict[str, Any] = {
    "type": "driving_license",
    "info": {
        "id": "790123456789",
        "name": "NGUYEN VAN MAU",
        "class": "B2",
        "class_confidence": 0.9,
    },
}

CHIP_2024_FRONT: dict[str, Any] = {
    "type": "chip_id_card_2024_front",
    "valid": "True",
    "invalidMessage": "",
    "info": {"id": "001099012345", "name": "NGUYỄN VĂN MẪU", "dob": "15/04/1999"},
}

ALL_DOCUMENTS = {
    "chip_front": CHIP_FRONT,
    "chip_back": CHIP_BACK,
    "cmnd_front": CMND_FRONT,
    "cmnd_back": CMND_BACK,
    "cccd_front": CCCD_FRONT,
    "cccd_back": CCCD_BACK,
    "passport": PASSPORT,
    "driving_license": DRIVING_LICENSE,
    "chip_2024_front": CHIP_2024_FRONT,
}


def answer(data: Any, code: str | int = "0", message: str = "") -> bytes:
    """An answer body as the service sends it."""
    return json.dumps({"data": data, "errorCode": code, "errorMessage": message}).encode()


ERROR_MESSAGES = {
    1: "The photo does not contain content",
    2: "Url is unavailable",
    3: "Incorrect image format",
    4: "Out of requests",
    5: "Incorrect Api_key or api_secret",
    6: "Incorrect format type",
}
