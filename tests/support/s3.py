"""An S3-compatible server for the tests and the benchmark: moto's server (PyPI moto[server]) in its own process,
on loopback. MinIO's binary cannot be had here; the engine's code uses only what MinIO serves too."""
import os
import socket
import subprocess
import sys
import time

import boto3
from botocore.config import Config

ACCESS_KEY = "sg-test-access-key"
SECRET_KEY = "sg-test-secret-key-never-shown-0123456789"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    def __init__(self):
        self.port = _free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("the S3 test server (moto) exited at start") from None
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the S3 test server (moto) did not start in 30 s")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self):
        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(signature_version="s3v4"))

    def create_bucket(self, name):
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket):
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, bucket, key):
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()
