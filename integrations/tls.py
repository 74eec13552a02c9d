"""One verifying TLS context per process, shared by every HTTP client.

Building a context loads the CA bundle (about 0.1 s of CPU each time), and every step of a
request opens fresh clients; sharing one context is the same verification, done once.
"""

from __future__ import annotations

import functools
import ssl

import certifi

__all__ = ["tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())
