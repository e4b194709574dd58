"""A shard folder in object storage, through MosaicML streaming's own clients (s3://, gs://, oci://, azure://, hf://, ...).

`upload_folder` publishes what data_prep wrote (the manifest last, so a reader that finds it finds the rest);
`fetch` brings one file down (the manifest, the tokenizer, held-out text), and the training streams download
their shards themselves with `Stream(remote=..., local=...)`. An S3-compatible store is chosen the way
streaming takes it: `S3_ENDPOINT_URL`. Errors name the URL, what is wrong and what to set.
"""
from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

SKIPPED = (".units", ".tmp-", ".write-probe")


def check_remote_url(url: str) -> str:
    """The URL's scheme, if streaming can read and write it; else a ValueError listing the ones it can."""
    from streaming.base.storage.upload import UPLOADERS

    scheme = urllib.parse.urlparse(url).scheme
    known = sorted(s for s in UPLOADERS if s and "/" not in s)
    if scheme not in known or not urllib.parse.urlparse(url).netloc:
        raise ValueError(f"{url!r} is not a remote streaming reads: give <scheme>://<bucket>/<prefix> with a scheme of {known}")
    return scheme


def explain(error: BaseException, url: str) -> str:
    """One line for a failed remote operation: missing bucket, wrong prefix, missing credentials, no endpoint."""
    name = type(error).__name__
    endpoint = os.environ.get("S3_ENDPOINT_URL")
    where = f" at S3_ENDPOINT_URL={endpoint}" if endpoint else ""
    code = ""
    if hasattr(error, "response"):
        code = str(error.response.get("Error", {}).get("Code", ""))
    text = str(error)
    bucket = urllib.parse.urlparse(url).netloc
    if name in ("NoCredentialsError", "PartialCredentialsError") or code in ("InvalidAccessKeyId", "SignatureDoesNotMatch") \
            or "credentials" in text.lower():
        return (f"no valid credentials for {url}{where} ({name}{': ' + code if code else ''}); set AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://, ~/.oci/config for oci://")
    if code == "NoSuchBucket" or "does not exist" in text and "bucket" in text.lower() or _missing_s3_bucket(url, code):
        return f"bucket {bucket!r} does not exist{where}; create it or fix the bucket name in {url}"
    if code in ("404", "NoSuchKey") or "not found" in text.lower() or isinstance(error, FileNotFoundError):
        return f"{url} was not found{where}: the bucket is there but not this file; check the prefix (data.remote= points at the folder holding manifest.json)"
    if code in ("403", "AccessDenied"):
        return f"access to {url} denied{where}; check the credentials' permissions on bucket {bucket!r}"
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionError"):
        return f"cannot reach the store for {url}{where} ({text}); check S3_ENDPOINT_URL and the network"
    return f"{url}: {name}: {text}"


def _missing_s3_bucket(url: str, code: str) -> bool:
    """streaming reports a missing object and a missing bucket alike (404); ask S3 which it is."""
    if code not in ("404", "NoSuchKey") or urllib.parse.urlparse(url).scheme != "s3":
        return False
    import boto3
    from botocore.exceptions import ClientError

    try:
        boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL")).head_bucket(Bucket=urllib.parse.urlparse(url).netloc)
    except ClientError as e:
        return str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket")
    except Exception:                    # noqa: BLE001 (no answer: say what streaming said)
        return False
    return False


def fetch(url: str, local: Path, timeout: float = 60.0) -> None:
    """Download one file, replacing `local` only once it is whole."""
    from streaming.base.storage.download import CloudDownloader

    check_remote_url(url)
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f"{local.name}.download-{os.getpid()}")      # ranks of a node fetch side by side
    partial.unlink(missing_ok=True)
    try:
        CloudDownloader.direct_download(url, str(partial), timeout)
    except Exception as e:               # noqa: BLE001 (botocore, google and oci errors have no common base)
        partial.unlink(missing_ok=True)
        raise ValueError(explain(e, url)) from None
    os.replace(partial, local)


def check_upload(local: str | Path, url: str) -> None:
    """Before any work: the URL is one streaming writes and its bucket is there (the uploader checks on creation)."""
    from streaming.base.storage.upload import CloudUploader

    check_remote_url(url)
    Path(local).mkdir(parents=True, exist_ok=True)
    try:
        CloudUploader.get(out=(str(local), url), keep_local=True, exist_ok=True)
    except Exception as e:               # noqa: BLE001
        raise ValueError(f"--upload: {explain(e, url)}") from None


def upload_folder(local: str | Path, url: str) -> int:
    """Every file of a finished shard folder under `url`, the manifest last; returns the number of files."""
    from streaming.base.storage.upload import CloudUploader

    from .manifest import MANIFEST

    check_remote_url(url)
    local = Path(local)
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*")
                   if p.is_file() and not any(part.startswith(SKIPPED) for part in p.relative_to(local).parts))
    files = [f for f in files if f != MANIFEST] + [MANIFEST]
    try:
        uploader = CloudUploader.get(out=(str(local), url), keep_local=True, exist_ok=True)
        for name in files:
            uploader.upload_file(name)
    except Exception as e:               # noqa: BLE001
        raise ValueError(explain(e, url)) from None
    return len(files)


def fetch_shard_folder(url: str, root: Path) -> None:
    """What a node needs before its streams start: the manifest (always fresh), the tokenizer (unless the cached
    copy has the manifest's sha256) and, for a `--parallel` build, each language's held-out lines."""
    from .manifest import MANIFEST, read_manifest
    from .tokenizer import file_sha256

    url = url.rstrip("/")
    fetch(f"{url}/{MANIFEST}", root / MANIFEST)
    manifest = read_manifest(root)
    name = manifest["tokenizer"]["path"]
    tokenizer = root / name
    if not tokenizer.exists() or file_sha256(tokenizer) != manifest["tokenizer"]["sha256"]:
        tokenizer.unlink(missing_ok=True)
        fetch(f"{url}/{name}", tokenizer)
    for companion in manifest["tokenizer"].get("companions", []):
        fetch(f"{url}/{companion}", root / companion)
    if manifest["settings"].get("parallel"):
        for label in manifest["languages"]:
            if not (root / label / "heldout.jsonl").exists():
                fetch(f"{url}/{label}/heldout.jsonl", root / label / "heldout.jsonl")
