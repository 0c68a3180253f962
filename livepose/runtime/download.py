"""Fetch a file over HTTP(S) with a checksum check; a half-downloaded or wrong file never takes its name.

The download streams into a temporary file in the destination folder, is verified, and only then
renamed onto the destination (same file system, so the rename is atomic).
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from livepose.files import sha256_of

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The file could not be fetched (offline, unreachable, HTTP error)."""


class ChecksumError(ValueError):
    """A file's SHA-256 is not the expected one."""


def verify_file(path, sha256=None, sha256_prefix=None):
    """Check `path` against a full SHA-256 or a known prefix of it (hex); -> the file's full SHA-256.

    A prefix (such as the 8 hex digits in MMPose file names) only rules out accidents, not tampering:
    say so wherever only the prefix is known.
    """
    actual = sha256_of(path)
    expected = _expected(sha256, sha256_prefix)
    if expected and not actual.startswith(expected):
        what = "SHA-256" if sha256 else "SHA-256 prefix"
        raise ChecksumError(f"{path}: {what} should be {expected}, the file has {actual[:len(expected)]} (full: {actual})")
    return actual


def fetch(url, dest, *, sha256=None, sha256_prefix=None, progress=True, timeout=30):
    """Download `url` to `dest` (a file path) unless a verified copy is already there; -> Path(dest).

    Raises DownloadError when the server cannot be reached (the message names the URL and where to
    put a manually downloaded copy) and ChecksumError when the content does not match.
    """
    dest = Path(dest)
    expected = _expected(sha256, sha256_prefix)
    if dest.is_file():
        verify_file(dest, sha256, sha256_prefix)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-", suffix="-" + dest.name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, dest, progress, timeout)
        if expected and not actual.startswith(expected):
            what = "SHA-256" if sha256 else "SHA-256 prefix"
            raise ChecksumError(
                f"{url}: downloaded file's {what} is {actual[:len(expected)]}, expected {expected} "
                f"(full: {actual}); not saved as {dest}"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _stream(url, out, dest, progress, timeout):
    """Copy the response body into `out`; -> its SHA-256 hex."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, dest.name) if progress else None
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and out.tell() != total:
                raise DownloadError(f"{url}: connection closed after {out.tell()} of {total} bytes")
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}; {_manual_hint(url, dest)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"{url}: cannot download ({reason}); {_manual_hint(url, dest)}") from None
    out.flush()
    os.fsync(out.fileno())
    return digest.hexdigest()


def _manual_hint(url, dest):
    return f"if this machine is offline, download it elsewhere and put it at {dest}"


def _expected(sha256, sha256_prefix):
    if sha256 and sha256_prefix:
        raise ValueError("give sha256 or sha256_prefix, not both")
    value = (sha256 or sha256_prefix or "").strip().lower()
    if value and (any(c not in "0123456789abcdef" for c in value) or (sha256 and len(value) != 64)):
        raise ValueError(f"sha256: expected {'64' if sha256 else 'some'} hex digits, got {value!r}")
    return value


def _progress_bar(total, name):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False)
