"""Async Python client for the Computer Vision Vietnam card OCR / eKYC API.

::

    from cvekyc_async import AsyncCVClient, CVClient

    async with AsyncCVClient() as client:  # $CVEKYC_API_KEY / $CVEKYC_API_SECRET
        res = await client.extract_card("front.jpg")
        print(res.cards[0].type, res.cards[0].info.to_dict())

    with CVClient() as client:  # the same, synchronous
        res = client.extract_card("front.jpg")
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from ._adaptive import AdaptiveConcurrency
from ._batch import BatchProgress, BatchResult
from ._client import NOT_GIVEN, AsyncCVClient, NotGiven
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    CVError,
    FormatTypeError,
    InternalServerError,
    InvalidImageError,
    InvalidInputError,
    MalformedResponseError,
    NoDocumentError,
    NotFoundError,
    PermissionDeniedError,
    QueueTimeoutError,
    QuotaExceededError,
    RateLimitError,
    ResponseTooLargeError,
    URLUnavailableError,
)
from ._hooks import EventHook, EventHooks, HookEvent
from ._inputs import ImageInput, ImageSource
from ._logs import setup_logging as _setup_logging
from ._models import (
    WARNING_MESSAGES,
    Box,
    Card,
    CardInfo,
    CCCDBackInfo,
    CCCDFrontInfo,
    ChipCCCD2024BackInfo,
    ChipCCCD2024FrontInfo,
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
from ._prepare import Preparation, Prepare
from ._raw import AsyncRawResponses, RawResponse
from ._retry import RetryPolicy
from ._sync import BatchIterator, CVClient, RawResponses
from ._usage import Usage

# CVEKYC_LOG=debug|info|warning turns the library's logger on (see _logs).
_setup_logging()

__all__ = [
    "NOT_GIVEN",
    "WARNING_MESSAGES",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveConcurrency",
    "AsyncCVClient",
    "AsyncRawResponses",
    "AuthenticationError",
    "BatchIterator",
    "BatchProgress",
    "BatchResult",
    "Box",
    "CCCDBackInfo",
    "CCCDFrontInfo",
    "CMNDBackInfo",
    "CMNDFrontInfo",
    "CVClient",
    "CVError",
    "Card",
    "CardInfo",
    "ChipCCCD2024BackInfo",
    "ChipCCCD2024FrontInfo",
    "ChipCCCDBackInfo",
    "ChipCCCDFrontInfo",
    "ClientStateError",
    "ConfigurationError",
    "EventHook",
    "EventHooks",
    "ExtractionResult",
    "FormatTypeError",
    "GenericInfo",
    "HookEvent",
    "ImageInput",
    "ImageSource",
    "Info",
    "InternalServerError",
    "InvalidImageError",
    "InvalidInputError",
    "MalformedResponseError",
    "NoDocumentError",
    "NotFoundError",
    "NotGiven",
    "PassportInfo",
    "PermissionDeniedError",
    "Preparation",
    "Prepare",
    "QueueTimeoutError",
    "QuotaExceededError",
    "RateLimitError",
    "RawResponse",
    "RawResponses",
    "ResponseTooLargeError",
    "RetryPolicy",
    "URLUnavailableError",
    "Usage",
    "__version__",
    "decode_answer",
    "parse_date",
]
