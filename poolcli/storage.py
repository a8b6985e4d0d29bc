"""Inputs, folders and outputs given as fsspec URLs (``s3://``, ``gs://``, ``abfs://``, ``file://``,
``memory://``, ...).

fsspec is imported only when a URL is used, so plain paths cost nothing.  Folders and prefixes
are listed by :mod:`poolcli.listing`.  Writes are whole or nothing: a temporary file and a rename
where there is a file system, one PUT (or a multipart upload aborted on failure) on object stores.

May import: the standard library at import time; fsspec (and through it s3fs, gcsfs, ...) only
when a URL is used.

>>> is_url("s3://bucket/photos/"), is_url("photos/a.png"), is_url("C:\\\\photos")
(True, False, False)
>>> redact("ftp://user:secret@host/a.png")
'ftp://***@host/a.png'
>>> join("s3://bucket/out/", "sub/a.png")
's3://bucket/out/sub/a.png'
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, BinaryIO

from poolcli.errors import PoolcliError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

INSTALL_HINT = 'pip install "poolcli[dask]"'
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_CREDENTIALS = re.compile(r"(?<=://)[^/@]*@")
LOCAL_PROTOCOLS = ("file", "local")
# Stores where an object appears whole in one PUT: write the bytes at once, never rename.
OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "abfs", "az", "adl", "abfss", "memory", "oss", "r2")


UPLOAD_PART = 8 << 20  # bytes of one part of a multipart upload (S3's minimum is 5 MiB)


class StorageError(PoolcliError):
    """A URL that cannot be used: no fsspec, an unknown protocol, bad storage options, or a fault
    of the store (missing bucket or key, access denied, no credentials, an endpoint that cannot be
    reached, throttling after retries), with the likely fix."""


_CREDENTIALS_HINT = ("check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or "
                     "key and secret in --storage-options")
_ENDPOINT_HINT = "check AWS_ENDPOINT_URL, or --storage-options '{\"endpoint_url\": \"http://HOST:PORT\"}'"
# Exception class names of botocore, aiobotocore, aiohttp and the other stores' clients, by kind.
_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                   "DefaultCredentialsError", "ClientAuthenticationError")
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError",
                "ServerDisconnectedError", "ClientOSError", "ConnectionRefusedError", "ConnectionError",
                "ProxyConnectionError", "ReadTimeoutError", "TimeoutError", "gaierror")
_THROTTLED = ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "503")
_DENIED = ("AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403")


class StorageFault(StorageError):
    """A fault of the store met while using ``url`` (exit code 1); ``reason`` says what and how to
    fix it, ``str()`` names the URL too."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{redact(url)}: {reason}")
        self.url, self.reason = url, reason


def describe_error(error: BaseException) -> str | None:
    """The user's reason for a storage fault, or None if ``error`` is not one (then it is a bug,
    or another module's to explain).

    >>> describe_error(PermissionError("Access Denied"))
    'access denied (Access Denied); check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
(or AWS_PROFILE), or key and secret in --storage-options'
    >>> describe_error(ValueError("x")) is None
    True
    """
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt is None or nxt in chain or len(chain) > 8:
            break
        chain.append(nxt)
    names = {type(e).__name__ for e in chain} | {b.__name__ for e in chain for b in type(e).__mro__}
    text = redact(" ".join(str(error).split()))[:240]  # the outermost words: the inner ones repeat them
    detail = f" ({text})" if text else ""
    codes = {str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) for e in chain
             if isinstance(getattr(e, "response", None), dict)}
    every = " ".join(str(e) for e in chain)
    if names & set(_NO_CREDENTIALS) or "Unable to locate credentials" in every:
        return f"no storage credentials found; {_CREDENTIALS_HINT}"
    if codes & set(_THROTTLED) or any(word in text for word in ("SlowDown", "Throttl", "Rate exceeded")):
        return f"the store is throttling requests and retries did not help{detail}; try again later"
    if isinstance(error, PermissionError) or codes & set(_DENIED) or "AccessDenied" in text:
        return f"access denied{detail}; {_CREDENTIALS_HINT}"
    if "NoSuchBucket" in codes or "bucket does not exist" in every.lower() or "NoSuchBucket" in every:
        return f"no such bucket{detail}"
    if isinstance(error, FileNotFoundError) or "NoSuchKey" in codes:
        return "no such file"
    if names & set(_UNREACHABLE) or "Could not connect" in every or "Connect call failed" in every:
        return f"cannot reach the storage endpoint{detail}; {_ENDPOINT_HINT}"
    if any(type(e).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs",
                                                 "fsspec", "google", "azure") for e in chain):
        return f"the store refused the request{detail}"
    return None


def raise_for(error: BaseException, url: str) -> None:
    """Raise :class:`StorageError` with the user's reason if ``error`` is a storage fault of a
    remote ``url``; return otherwise."""
    if is_url(url) and not is_local_url(url):
        reason = describe_error(error)
        if reason is not None:
            raise StorageFault(url, reason) from None


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Storage faults met inside the block become one :class:`StorageError` naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as error:
        raise_for(error, url)
        raise


def is_zarr_url(url: str) -> bool:
    """A remote Zarr store, by its name: ``s3://bucket/scene.zarr`` (or ``.zarr/``); one input,
    never a folder to walk.

    >>> is_zarr_url("s3://b/a.ZARR/"), is_zarr_url("s3://b/a.png"), is_zarr_url("a.zarr")
    (True, False, False)
    """
    return is_url(url) and not is_local_url(url) and url.rstrip("/").lower().endswith(".zarr")


def is_url(text: str | None) -> bool:
    """Is ``text`` a URL with a protocol (``s3://...``) rather than a plain path?"""
    return bool(text) and _URL.match(text) is not None  # type: ignore[arg-type]


def protocol(url: str) -> str:
    match = _URL.match(url)
    return match.group(1).lower() if match else "file"


def is_local_url(url: str) -> bool:
    return protocol(url) in LOCAL_PROTOCOLS


def local_path(url: str) -> str:
    """The path of a ``file://`` URL (``file:///tmp/a.png`` → ``/tmp/a.png``)."""
    return url[len(protocol(url)) + 3:] or "/"


def redact(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL replaced: nothing secret is ever printed."""
    return _CREDENTIALS.sub("***@", text) if "://" in text else text


def join(folder: str, relative: str) -> str:
    """A relative POSIX path under a folder URL as typed (one ``/`` between them)."""
    return folder.rstrip("/") + "/" + relative if not folder.endswith("://") else folder + relative


def key(url: str) -> str:
    """A canonical form of a URL for comparing outputs with each other and with inputs."""
    if is_local_url(url):
        return os.path.abspath(local_path(url))
    scheme = protocol(url)
    rest = redact(url)[len(scheme) + 3:]
    return f"{scheme}://{posixpath.normpath('/' + rest)[1:]}"


@lru_cache(maxsize=8)
def _parsed_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    import json  # here: only --storage-options needs it

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise StorageError(f"not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise StorageError("give a JSON object, e.g. '{\"anon\": true}'")
    return value


def check_options(text: str | None) -> None:
    """Raise :class:`StorageError` if ``--storage-options`` is not a JSON object."""
    _parsed_options(text)


def options_for(url: str, text: str | None) -> dict[str, Any]:
    """The storage options for ``url``: the JSON object itself, or its entry for the URL's protocol
    when every key names a protocol (``{"s3": {...}, "gs": {...}}``)."""
    options = _parsed_options(text)
    if options and all(isinstance(v, dict) and name in _known_protocols() for name, v in options.items()):
        return dict(options.get(protocol(url), {}))
    return dict(options)


def _known_protocols() -> set[str]:
    from fsspec.registry import known_implementations

    return set(known_implementations)


def filesystem(url: str, storage_options: str | None = None) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system of a URL and the path in it."""
    try:
        import fsspec.core
    except ImportError:
        raise StorageError(f"reading and writing URLs needs fsspec: {INSTALL_HINT}") from None
    try:
        return fsspec.core.url_to_fs(url, **options_for(url, storage_options))
    except ImportError as error:  # e.g. s3fs or gcsfs missing
        raise StorageError(f"{protocol(url)}:// needs a package that is not installed ({error})") from None
    except ValueError as error:
        raise StorageError(f"cannot use {redact(url)}: {error}") from None


def is_s3(fs: Any) -> bool:
    """Is ``fs`` s3fs's file system, whose listing :func:`call_s3` pages through?"""
    return hasattr(fs, "_call_s3")


def call_s3(fs: Any, method: str, **kwargs: Any) -> Any:
    """One S3 API call through s3fs's client (a private name of s3fs, used here alone: a listing
    of one level a page at a time, which s3fs's public ``ls`` does not offer)."""
    from fsspec.asyn import sync

    return sync(fs.loop, fs._call_s3, method, **kwargs)


# --------------------------------------------------------------------------- questions


def exists(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.exists(local_path(url))
    fs, path = filesystem(url, storage_options)
    with translated(url):
        return bool(fs.exists(path))


def isdir(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.isdir(local_path(url))
    fs, path = filesystem(url, storage_options)
    with translated(url):
        return bool(fs.isdir(path))


def isfile(url: str, storage_options: str | None = None) -> bool:
    if is_local_url(url):
        return os.path.isfile(local_path(url))
    fs, path = filesystem(url, storage_options)
    with translated(url):
        return bool(fs.isfile(path))


# --------------------------------------------------------------------------- reading and writing


def read_bytes(url: str, storage_options: str | None = None, limit: int | None = None) -> bytes:
    """The whole object, of at most ``limit`` bytes (as standard input is capped).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, EOFError
        For a missing object, a folder, an empty object.
    """
    fs, path = filesystem(url, storage_options)
    with translated(url):
        info = fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(url)
        size = int(info.get("size") or 0)
        if not size:
            raise EOFError(url)
        if limit is not None and size > limit:
            raise StorageFault(url, f"the object holds more than {limit} bytes, the most --max-pixels allows (16 "
                                    "bytes a pixel); raise --max-pixels (0 removes the limit) if you trust it")
        return bytes(fs.cat_file(path))


def write(url: str, write_to: Callable[[BinaryIO], None], storage_options: str | None = None) -> None:
    """Write an object that appears whole or not at all.

    Object stores get the encoded bytes in one PUT (s3fs turns more than 100 MB into a multipart
    upload that it aborts on failure); other file systems a temporary name and a move.
    """
    if is_local_url(url):
        from poolcli import paths

        paths.write_all([(local_path(url), write_to)])
        return
    buffer = io.BytesIO()
    write_to(buffer)  # encode first: a failed encoding never reaches the store
    fs, path = filesystem(url, storage_options)
    with translated(url):
        _put(fs, url, path, buffer)


def upload(local: str, url: str, storage_options: str | None = None) -> None:
    """Send a finished local file to ``url`` whole: one PUT on object stores (s3fs makes a large
    one a multipart upload, aborted on failure), a temporary name and a move elsewhere."""
    if is_local_url(url):
        import shutil

        from poolcli import paths

        with open(local, "rb") as handle:
            paths.write_all([(local_path(url), lambda sink: shutil.copyfileobj(handle, sink))])
        return
    fs, path = filesystem(url, storage_options)
    # s3fs sends 10 parts of 50 MiB at once by default (500 MiB in flight): one part of 8 MiB instead
    upload_args = {"chunksize": UPLOAD_PART, "max_concurrency": 1} if is_s3(fs) else {}
    with translated(url):
        fs.put_file(local, path, **upload_args)


def _put(fs: Any, url: str, path: str, buffer: io.BytesIO) -> None:
    if protocol(url) in OBJECT_STORES or not hasattr(fs, "mv"):
        fs.pipe_file(path, buffer.getvalue())
        return
    import uuid

    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.part" if parent else f".{name}.{uuid.uuid4().hex}.part"
    with contextlib.suppress(Exception):
        fs.makedirs(parent, exist_ok=True)
    try:
        fs.pipe_file(temporary, buffer.getvalue())
        fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm_file(temporary)
        raise
