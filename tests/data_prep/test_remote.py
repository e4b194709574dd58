"""Shards in an S3 bucket: a real S3 API (moto's standalone server) that the test starts on 127.0.0.1, reached
through boto3 and streaming's own clients with S3_ENDPOINT_URL, as a user's bucket is."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

from tests.in_process import command
from tests.processes import run, run_env

BUCKET = "mmbert-shards"
LANGUAGES = "eng_Latn,rus_Cyrl,fao_Latn,tir_Ethi,cmn_Hani,amh_Ethi"


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> dict:
    """The environment of a client of a fresh S3 server on 127.0.0.1 holding one empty bucket."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)      # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull}
    boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


@pytest.fixture(scope="module")
def published(s3: dict, tmp_path_factory, tokenizer_model: Path, sample_dir: Path) -> str:
    """The sample's shards of six languages built with --parallel and published with --upload; returns the URL."""
    out = tmp_path_factory.mktemp("publish") / "shards"
    url = f"s3://{BUCKET}/corpora/sample-r256"
    r = run([sys.executable, "-m", "data_prep.shards", "--input", str(sample_dir), "--tokenizer", str(tokenizer_model),
             "--out", str(out), "--row-length", "256", "--languages", LANGUAGES, "--val-fraction", "0.2", "--parallel",
             "--no-progress", "--upload", url], "data_prep.shards --upload", env={**os.environ, **s3})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "uploaded" in r.stdout and url in r.stdout
    return url


def objects(s3: dict, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3["S3_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing",
                          region_name="us-east-1")
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_upload_publishes_the_whole_folder(s3: dict, published: str) -> None:
    keys = objects(s3, "corpora/sample-r256/")
    names = {k.removeprefix("corpora/sample-r256/") for k in keys}
    assert {"manifest.json", "tokenizer.model", "eng_Latn/train/index.json", "eng_Latn/val/index.json", "eng_Latn/heldout.jsonl"} <= names
    assert any(n.startswith("tir_Ethi/train/shard.00000.mds") for n in names)
    assert not any(n.startswith((".units", ".tmp-")) for n in names)


@pytest.mark.slow
def test_training_reads_the_bucket_into_a_node_local_cache(s3: dict, published: str, tmp_path: Path) -> None:
    cache = tmp_path / "node-local"
    env = {**run_env(tmp_path, tmp_path / "cache"), **s3}
    args = [f"data.remote={published}", f"data.root={cache}", "trainer.max_steps=4",
            "data.micro_batch=4", "callbacks.language_milestones=[[0.5,[eng_Latn,rus_Cyrl]]]", "callbacks.retrieval.every=1.0",
            "trainer.progress_bar=false"]
    r = command("mmbert_pl.run", args, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (cache / "manifest.json").exists() and (cache / "tokenizer.model").exists()
    assert list(cache.glob("eng_Latn/train/shard.*.mds*")) and (cache / "tir_Ethi" / "heldout.jsonl").exists()
    rows = list(csv.DictReader(open(tmp_path / "runs" / "sample" / "logs" / "metrics.csv")))
    assert any(r.get("retrieval/macro_to") for r in rows) and any(r.get("val/tir_Ethi/loss") for r in rows)
    assert [float(r["schedule/languages"]) for r in rows if r.get("schedule/languages")][-1] == 2.0     # the second segment ran


@pytest.mark.parametrize("case", ["missing bucket", "wrong prefix", "no credentials"])
def test_a_bad_remote_gives_one_clear_error(case: str, s3: dict, published: str, tmp_path: Path) -> None:
    remote, env = published, {**run_env(tmp_path, tmp_path / "cache"), **s3}
    if case == "missing bucket":
        remote, expected = "s3://no-such-bucket/corpora/sample-r256", "bucket 'no-such-bucket' does not exist"
    elif case == "wrong prefix":
        remote, expected = f"s3://{BUCKET}/corpora/sample-r1024", "was not found"
    else:
        env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        expected = "no valid credentials"
    r = command("mmbert_pl.run", [f"data.remote={remote}", f"data.root={tmp_path / 'node-local'}", "trainer.max_steps=2"], env)
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "runs").exists()


def test_upload_to_a_missing_bucket_stops_before_any_work(s3: dict, tokenizer_model: Path, sample_dir: Path, tmp_path: Path) -> None:
    r = run([sys.executable, "-m", "data_prep.shards", "--input", str(sample_dir), "--tokenizer", str(tokenizer_model),
             "--out", str(tmp_path / "out"), "--row-length", "256", "--upload", "s3://no-such-bucket/x"], "a bad --upload",
            env={**os.environ, **s3})
    assert r.returncode == 2 and "--upload" in r.stderr and "no-such-bucket" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out" / "manifest.json").exists()
