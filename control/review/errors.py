"""Review-app errors.

ReviewError
├── SignatureError   a webhook delivery is unsigned or its signature does not match
├── PayloadError     a delivery is not the JSON shape GitHub documents for its event
└── AppJsonError     the repository's app.json is invalid; says where
"""

from __future__ import annotations


class ReviewError(Exception):
    """Base of every error the review-app code raises on purpose."""


class SignatureError(ReviewError):
    pass


class PayloadError(ReviewError):
    pass


class AppJsonError(ReviewError):
    pass
