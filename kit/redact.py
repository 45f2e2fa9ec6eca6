"""Credentials out of URLs, and out of any text that carries URLs: the one masking function.

A URL names its credentials in two places: the userinfo
(``https://user:password@host``, ``https://TOKEN@host``) and the query string
(``?access_token=``, ``?X-Amz-Signature=``, ``?sig=``). Both are masked,
wherever the URL is shown: build output (git's own error text included), the
API, the audit log and slipway's own log lines. The whole userinfo goes, not
only the password: a lone user name is often the token itself.

Masking errs on the side of hiding: a query parameter whose name merely
contains a secret word (``monkey``) is masked too, since a hidden value costs
a reader little and a shown one can cost a tenant everything.
"""

from __future__ import annotations

import re
from typing import Any

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

# A scheme (RFC 3986: a letter, then letters, digits, + - .) and "://", then anything up
# to the first character that ends a URL in prose: whitespace, quotes, angle brackets.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<authority>[^/?#]*)")


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_PARAM_WORDS)


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
