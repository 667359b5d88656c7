"""Async Python client for the Computer Vision Vietnam card OCR / eKYC API.

::

    from cvekyc_async import AsyncCVClient

    async with AsyncCVClient() as client:  # $CVEKYC_API_KEY / $CVEKYC_API_SECRET
        res = await client.extract_card("front.jpg")
        print(res.cards[0].type, res.cards[0].info.to_dict())
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from ._batch import BatchProgress, BatchResult
from ._client import AsyncCVClient
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    CVError,
    FormatTypeError,
    InvalidImageError,
    InvalidInputError,
    MalformedResponseError,
    NoDocumentError,
    QuotaExceededError,
    RateLimitError,
    ResponseTooLargeError,
    URLUnavailableError,
)
from ._inputs import ImageInput, ImageSource
from ._models import (
    WARNING_MESSAGES,
    Box,
    Card,
    CardInfo,
    CCCDBackInfo,
    CCCDFrontInfo,
    ChipCCCDBackInfo,
    ChipCCCDFrontInfo,
    CMNDBackInfo,
    CMNDFrontInfo,
    ExtractionResult,
    GenericInfo,
    Info,
    PassportInfo,
    decode_answer,
    parse_date,
)
from ._retry import RetryPolicy
from ._usage import Usage

__all__ = [
    "WARNING_MESSAGES",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncCVClient",
    "AuthenticationError",
    "BatchProgress",
    "BatchResult",
    "Box",
    "CCCDBackInfo",
    "CCCDFrontInfo",
    "CMNDBackInfo",
    "CMNDFrontInfo",
    "CVError",
    "Card",
    "CardInfo",
    "ChipCCCDBackInfo",
    "ChipCCCDFrontInfo",
    "ConfigurationError",
    "ExtractionResult",
    "FormatTypeError",
    "GenericInfo",
    "ImageInput",
    "ImageSource",
    "Info",
    "InvalidImageError",
    "InvalidInputError",
    "MalformedResponseError",
    "NoDocumentError",
    "PassportInfo",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "URLUnavailableError",
    "Usage",
    "__version__",
    "decode_answer",
    "parse_date",
]
