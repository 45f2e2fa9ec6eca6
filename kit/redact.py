"""Credentials out of URLs, and out of any text that carries URLs: the one masking function.

A URL names its credentials in two places: the userinfo
(``https://user:password@host``, ``https://TOKEN@host``) and the query string
(``?access_token=``, ``?X-Amz-Signature=``, ``?sig=``). Both are masked,
wherever the URL is shown: build output (git's own error text included), the
API, the audit log, slipway's own log lines and the router's lines about
requests (``mask_path``: a request target is a path and a query, no scheme).
The whole userinfo goes, not only the password: a lone user name is often the
token itself.

Masking errs on the side of hiding: a query parameter whose name merely
contains a secret word (``monkey``) is masked too, since a hidden value costs
a reader little and a shown one can cost a tenant everything.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

#: What replaces a credential.
MASK = "***"
#: A query parameter whose lower-cased name contains one of these carries a credential.
SECRET_PARAM_WORDS = (
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "key",
    "sig",
    "credential",
    "auth",
    "session",
)
#: Query parameters that carry a credential under a plain name: an OAuth callback's
#: authorization code. Whole names only: ``country_code`` or ``promo_code`` show.
SECRET_PARAM_NAMES = frozenset({"code"})

# A scheme (RFC 3986: a letter, then letters, digits, + - .) and "://", then anything up
# to the first character that ends a URL in prose: whitespace, quotes, angle brackets.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#]*)")


# Where a lower-cased query string may hold a secret parameter: a secret word or name
# anywhere in it, or a percent escape (a name spelt ``%74oken``). Case-sensitive on a
# lower-cased copy: several times faster than re.IGNORECASE on the router's hot path.
_CANDIDATE = re.compile("|".join((*SECRET_PARAM_WORDS, *sorted(SECRET_PARAM_NAMES), "%")))


def _secret_param(name: str) -> bool:
    lowered = unquote(name).lower() if "%" in name else name.lower()
    return lowered in SECRET_PARAM_NAMES or any(word in lowered for word in SECRET_PARAM_WORDS)


def _mask_query(query: str) -> str:
    pairs = re.split(r"([&;])", query)
    for index in range(0, len(pairs), 2):
        name, sep, value = pairs[index].partition("=")
        if sep and value and _secret_param(name):
            pairs[index] = f"{name}={MASK}"
    return "".join(pairs)


def mask_url(url: str) -> str:
    """``url`` with its userinfo and its secret query values replaced by ``***``.

    Anything that is not a ``scheme://`` URL (a path, ``git@host:org/app.git``)
    comes back unchanged: it has no place for a credential.
    """
    found = _AUTHORITY.match(url)
    if found is None:
        return url
    authority = found["authority"]
    if "@" in authority:
        authority = MASK + "@" + authority.rsplit("@", 1)[1]
    rest = url[found.end() :]
    rest, hash_, fragment = rest.partition("#")
    path, question, query = rest.partition("?")
    if question:
        query = _mask_query(query)
    return f"{found['scheme']}{authority}{path}{question}{query}{hash_}{fragment}"


def mask_path(target: str) -> str:
    """A request target (``/cb?code=abc&state=x``) with its secret query values masked.

    Cheap for the router's every request: a target with no "?", or whose query
    names no secret word, comes back as it is, after one scan. An absolute-form
    target (``http://user:pw@host/...``) goes through ``mask_url``.
    """
    if not target.startswith("/"):
        return mask_url(target) if "://" in target else target
    question = target.find("?")
    if question < 0:
        return target
    query = target[question + 1 :]
    if _CANDIDATE.search(query.lower()) is None:
        return target
    return target[: question + 1] + _mask_query(query)


def mask_text(text: str) -> str:
    """``text`` with every URL in it masked (git's stderr, an exception, a log field)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda found: mask_url(found.group(0)), text)


def mask_data(value: Any) -> Any:
    """JSON-shaped ``value`` with every string in it masked (an audit entry's detail)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: mask_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(item) for item in value]
    return value
