"""The data hash recorded on every run: the input files' bytes, whatever caches it."""

from __future__ import annotations

import hashlib
import os

from crm_ltv.training.tracking import file_sha256


def test_the_data_hash_is_the_files_bytes_and_follows_a_rewrite(tmp_path):
    one, two = tmp_path / "a.csv", tmp_path / "b.csv"
    one.write_bytes(b"customer_id,timestamp,amount\nc1,2024-01-01,5\n")
    two.write_bytes(b"customer_id,timestamp,amount\nc2,2024-01-02,7\n")
    assert file_sha256(one) == hashlib.sha256(one.read_bytes()).hexdigest()
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in (one, two)]
    assert file_sha256(one, None, two) == hashlib.sha256("".join(digests).encode()).hexdigest()
    assert file_sha256(two, one) != file_sha256(one, two)  # in order
    before = file_sha256(one)
    stat = one.stat()
    one.write_bytes(b"customer_id,timestamp,amount\nc1,2024-01-01,6\n")  # same size
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert file_sha256(one) != before
    assert file_sha256(one) == hashlib.sha256(one.read_bytes()).hexdigest()
