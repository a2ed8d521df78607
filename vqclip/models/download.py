"""Fetching model files once, safely: resume, mirrors, stall timeouts, size and sha256 checks, atomic rename.

A file is written to `<name>.part` (plus `<name>.part.json` remembering the host's length and validators, so a
later run can resume with an HTTP Range request) and only renamed to its final name once complete and verified.
Files without a pinned sha256 get theirs recorded in `<home>/manifest.json` on first download and are checked
against it on every later load, so a corrupted or swapped file is caught.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import Timeout
from tqdm import tqdm

from ..errors import VqclipError, reason
from ..files.atomic import write_text
from .integrity import IntegrityError, Manifest, check_bytes, lock_for, verify_file
from .presets import MANIFEST_NAME, FileSpec

log = logging.getLogger("vqclip")

USER_AGENT = "vqclip (model downloader; urllib)"
CHUNK = 256 * 1024
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


@dataclass(frozen=True)
class MissingFile:
    """A file that could not be fetched: where it was tried (with why it failed) and where to put it by hand (and,
    in `note`, what that place is where it is not where downloads go)."""

    filename: str
    urls: tuple[str, ...]
    dest: Path
    reasons: tuple[str, ...]
    note: str = ""


def missing_file(spec: FileSpec, dest: Path, reasons: list[str]) -> MissingFile:
    """A MissingFile for `spec` meant to live at `dest`."""
    return MissingFile(spec.filename, spec.urls, Path(dest).absolute(), tuple(reasons))


class DownloadError(VqclipError):
    """Files that could not be fetched (offline, every host failed, or every copy failed verification); `instead`:
    what runs without them, said first (e.g. the built-in preset)."""

    def __init__(self, missing: list[MissingFile], headline: str | None = None, instead: str = ""):
        self.missing = list(missing)
        n = len(self.missing)
        self.headline = headline or f"could not download {n} file{'s' * (n != 1)} (offline, or every host failed)"
        self.instead = instead
        super().__init__(self._message())

    def _message(self) -> str:
        """One message naming each file, every URL tried and why it failed, and the exact path to put it at."""
        lines = [f"{self.headline}; {f'{self.instead}; or ' if self.instead else ''}download by hand and put each at "
                 "the path shown, then run again:"]
        for item in self.missing:
            lines.append(f"  {item.filename}")
            for url in item.urls:
                why = next((r[len(url) + 2:] for r in item.reasons if r.startswith(url + ": ")), "")
                lines.append(f"    from {url}" + (f"  ({why})" if why else ""))
            lines.extend(f"    ({r})" for r in item.reasons if not any(r.startswith(u + ": ") for u in item.urls))
            lines.append(f"    put it at {item.dest}" + (f" ({item.note})" if item.note else ""))
        return "\n".join(lines)


class _TransferError(Exception):
    """A host failed (unreachable, HTTP error, stalled, cut short): try the next mirror."""


def human_size(n: int | None) -> str:
    """Bytes as a short human string ('980 MB'); '?' when unknown."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - loop always returns


def _reason(exc: BaseException, timeout: float) -> str:
    """A short human reason for a network failure."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"stalled: no data for {timeout:g} s"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return reason(exc)


def _host(url: str) -> str:
    """The host of a URL, for messages."""
    return urllib.parse.urlsplit(url).netloc or url


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) from a Content-Range header like 'bytes 100-199/200' or 'bytes */200'."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _read_meta(path: Path) -> dict:
    """What the last attempt learnt about the host's file (url, total, etag, last_modified); {} if nothing."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, meta: dict) -> None:
    """Remember the host's length and validators next to the partial file (atomically)."""
    write_text(path, json.dumps(meta))


def _restart(part: Path, meta_path: Path) -> None:
    """Throw away a partial download so the next request starts from byte 0."""
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def _stream(resp, part: Path, mode: str, offset: int, total: int | None, progress: bool, name: str):
    """Copy the response body into `part`; (bytes written, the network error that stopped it or None)."""
    got, error = 0, None
    read = getattr(resp, "read1", resp.read)  # read1: what has arrived, so a stall keeps the bytes before it
    with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                       desc=name, disable=not progress, dynamic_ncols=True, mininterval=0.25) as bar:
        while True:
            try:
                chunk = read(CHUNK)
            except _NETWORK_ERRORS as exc:
                error = exc
                break
            if not chunk:
                break
            out.write(chunk)
            got += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return got, error


def _download(url: str, part: Path, spec: FileSpec, *, timeout: float, progress: bool, retries: int,
              mirror: bool = False) -> None:
    """Bring `part` to the complete file from `url`, resuming what is there; raises _TransferError/IntegrityError.
    Says "downloading" once the host has answered (offline, nothing is said before the error)."""
    meta_path = part.with_name(part.name + ".json")
    meta = _read_meta(meta_path)
    attempts, said = 0, False
    while True:
        offset = part.stat().st_size if part.is_file() else 0
        expected = spec.size if spec.size is not None else meta.get("total")
        if offset and expected is not None and offset > expected:
            _restart(part, meta_path)
            meta, offset = {}, 0
        if offset and expected is not None and offset == expected:
            return
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            etag = meta.get("etag") or ""
            validator = etag if etag and not etag.startswith("W/") else meta.get("last_modified")
            if validator and meta.get("url") == url:
                headers["If-Range"] = validator
        try:
            resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                total = _content_range(exc.headers.get("Content-Range"))[1]
                exc.close()
                if total == offset:
                    return
                _restart(part, meta_path)
                meta, attempts = {}, attempts + 1
                if attempts > retries:
                    raise _TransferError("the server refused to resume (HTTP 416)") from None
                continue
            exc.close()
            raise _TransferError(_reason(exc, timeout)) from None
        except _NETWORK_ERRORS as exc:
            raise _TransferError(_reason(exc, timeout)) from None
        with resp:
            if not said:
                log.info("downloading %s from %s%s", spec.filename, _host(url), " (mirror)" if mirror else "")
                said = True
            if resp.status == 206:
                start, total = _content_range(resp.headers.get("Content-Range"))
                if start != offset or (meta.get("total") is not None and total != meta["total"]):
                    log.info("%s sent a different part of %s than asked; starting again", _host(url), spec.filename)
                    _restart(part, meta_path)
                    meta, attempts = {}, attempts + 1
                    if attempts > retries:
                        raise _TransferError("the server sends inconsistent ranges")
                    continue
                mode = "ab"
            else:
                if offset:
                    log.info("%s does not resume downloads; fetching %s from the start", _host(url), spec.filename)
                length = resp.headers.get("Content-Length", "")
                offset, mode, total = 0, "wb", (int(length) if length.isdigit() else None)
            if spec.size is not None and total is not None and total != spec.size:
                raise IntegrityError(f"the host offers {total} bytes, but the file must be {spec.size}")
            meta = {"url": url, "total": total, "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified")}
            _write_meta(meta_path, meta)
            if total is not None:
                free = shutil.disk_usage(part.parent).free
                if free < total - offset:
                    raise VqclipError(f"not enough disk space for {spec.filename} in {part.parent}: needs "
                                      f"{human_size(total - offset)}, {human_size(free)} free; free space or set "
                                      "VQCLIP_HOME to another disk")
            got, error = _stream(resp, part, mode, offset, total, progress, spec.filename)
        done = offset + got
        if total is not None and done > total:
            raise IntegrityError(f"the host sent {done} bytes after announcing {total}")
        if (total is None and error is None) or done == total:
            return
        attempts += 1
        why = _reason(error, timeout) if error is not None else "the connection closed early"
        if got == 0 or attempts > retries:
            raise _TransferError(f"{why} after {done} of {human_size(total)}")
        log.warning("%s: transfer of %s cut after %s (%s); resuming", _host(url), spec.filename, human_size(done), why)


def fetch(spec: FileSpec, dest_dir: Path, *, progress: bool = True, timeout: float = 30.0,
          manifest: Manifest | None = None, retries: int = 3, force: bool = False) -> Path:
    """`dest_dir/spec.filename`, downloaded (resuming, trying mirrors in order) and verified unless already there.

    `timeout` bounds connecting and every wait for data (a stalled host fails over to the next mirror); `retries`
    is how many times a transfer cut mid-file is resumed from the same host. Concurrent runs fetch a file once: the
    others wait for it. Raises DownloadError naming the file, every URL tried and the exact path to put it at when
    no host delivers it.
    """
    dest_dir = Path(dest_dir).absolute()
    dest = dest_dir / spec.filename
    manifest = manifest if manifest is not None else Manifest(dest_dir / MANIFEST_NAME)
    if dest.is_file() and not force:
        verify_file(dest, spec, manifest)
        return dest
    if not spec.urls:
        raise DownloadError([missing_file(spec, dest, ["no download URL is known for this file"])])
    with _exclusive(dest):
        if dest.is_file() and not force:  # another run fetched it while this one waited
            verify_file(dest, spec, manifest)
            return dest
        return _fetch_now(spec, dest, manifest, progress=progress, timeout=timeout, retries=retries)


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an OS lock on `dest` (released if the process dies) so that one run at a time writes it."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = lock_for(dest)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another vqclip run that is downloading %s", dest.name)
            lock.acquire()
    except OSError as exc:
        raise VqclipError(f"cannot write {dest.parent}: {exc.strerror or exc}; check the folder or set VQCLIP_HOME "
                          "to a writable disk") from None
    try:
        yield
    finally:
        lock.release()


def _fetch_now(spec: FileSpec, dest: Path, manifest: Manifest, *, progress: bool, timeout: float,
               retries: int) -> Path:
    """Download `spec` to `dest` through `<dest>.part`, host by host, verifying before the atomic rename."""
    part = dest.with_name(dest.name + ".part")
    meta_path = part.with_name(part.name + ".json")
    reasons = []
    for i, url in enumerate(spec.urls):
        for fresh in (False, True):
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _download(url, part, spec, timeout=timeout, progress=progress, retries=retries, mirror=i > 0)
                entry = manifest.entry(dest)
                digest, size = check_bytes(part, spec, entry)
            except _TransferError as exc:
                reasons.append(f"{url}: {exc}")
                log.debug("%s failed for %s: %s", _host(url), spec.filename, exc)
                break
            except IntegrityError as exc:
                _restart(part, meta_path)
                if resumed and not fresh:  # the bytes kept from an earlier attempt may be the bad ones
                    log.info("%s: the resumed %s does not check out; fetching it whole", _host(url), spec.filename)
                    continue
                reasons.append(f"{url}: delivered {exc}")
                log.warning("%s delivered a bad copy of %s (%s); discarded", _host(url), spec.filename, exc)
                break
            except OSError as exc:  # network errors became _TransferError: this is the local disk
                raise VqclipError(f"cannot write {part}: {exc.strerror or exc}; check the folder or set "
                                  "VQCLIP_HOME to a writable disk") from None
            os.replace(part, dest)
            meta_path.unlink(missing_ok=True)
            if spec.sha256 is None and entry is None:
                manifest.record(dest, digest, size, source=url)
            log.info("%s ready (%s, sha256 %s...)", dest, human_size(size), digest[:16])
            return dest
    raise DownloadError([missing_file(spec, dest, reasons)])
