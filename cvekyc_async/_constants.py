"""Defaults and names shared by the client, the batch helper and the command line."""

from __future__ import annotations

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_POOL_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_WRITE_TIMEOUT",
    "ENV_API_KEY",
    "ENV_API_SECRET",
    "ENV_BASE_URL",
    "PATH_CARD",
    "PATH_CARDS",
    "PATH_OCR",
]

DEFAULT_BASE_URL = "https://cloud.computervision.com.vn"
ENV_API_KEY = "CVEKYC_API_KEY"
ENV_API_SECRET = "CVEKYC_API_SECRET"  # noqa: S105 - the variable's name, not a secret
ENV_BASE_URL = "CVEKYC_BASE_URL"

PATH_CARD = "/api/v2/ekyc/card"
PATH_CARDS = "/api/v2/ekyc/cards"
PATH_OCR = "/api/v2/ocr/card"

# Seconds. Reads are long because the service runs OCR before it answers; a PDF takes longer.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_WRITE_TIMEOUT = 30.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_POOL_TIMEOUT = 10.0

DEFAULT_MAX_CONCURRENCY = 10
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
# An answer with a thumbnail per page of a long PDF stays well under this; a bigger one is a fault.
DEFAULT_MAX_RESPONSE_SIZE = 32 * 1024 * 1024
