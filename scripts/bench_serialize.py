"""Serialization benchmark: memo's encoder against orjson, msgspec and json, in one run.

Targets: an 8-key experiment record holding four numpy values in <= 1.5 us, and
plain-Python records no slower than bare orjson x 1.3 (the baseline is orjson
writing the same line: ``orjson.dumps(record, option=OPT_SERIALIZE_NUMPY |
OPT_APPEND_NEWLINE)``, which writes nan/inf as null). Prints medians of repeated
timings and the ratios between encoders measured in the same run.

    python scripts/bench_serialize.py [--number N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit

import msgspec
import numpy as np
import orjson

from memo.serialize import dumps_line


def _enc_hook(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise NotImplementedError(type(obj).__name__)  # msgspec's enc_hook protocol for "unsupported"


def records():
    numpy_record = {
        "class_size": 23, "n_sim": 10_000, "model": "vectorized", "seed": 4,
        "est_proba": np.float64(0.5073), "time_taken": np.float32(0.0123),
        "n_uniq": np.int64(22), "converged": np.bool_(True),
    }
    plain_record = {
        "class_size": 23, "n_sim": 10_000, "model": "vectorized", "seed": 4,
        "est_proba": 0.5073, "time_taken": 0.0123, "n_uniq": 22, "converged": True,
    }
    return numpy_record, plain_record


def _wrapped_orjson(record, opts):
    return orjson.dumps(record, option=opts)


def median_us(fn, number: int, repeat: int) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    numpy_record, plain_record = records()
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    enc = msgspec.json.Encoder(enc_hook=_enc_hook)
    rows = []
    for label, rec in (("numpy record", numpy_record), ("plain record", plain_record)):
        t = {
            "memo dumps_line": median_us(lambda r=rec: dumps_line(r), args.number, args.repeat),
            "orjson (numpy opt)": median_us(lambda r=rec: orjson.dumps(r, option=opts),
                                            args.number, args.repeat),
            "msgspec + enc_hook": median_us(lambda r=rec: enc.encode(r), args.number,
                                            args.repeat),
            "stdlib json": median_us(lambda r=rec: json.dumps(r, default=_enc_hook),
                                     args.number // 5, args.repeat),
        }
        rows.append((label, t))
    print(f"{'record':<14}{'encoder':<22}{'us/record':>10}{'x orjson':>10}")
    for label, t in rows:
        base = t["orjson (numpy opt)"]
        for name, us in t.items():
            print(f"{label:<14}{name:<22}{us:>10.2f}{us / base:>10.2f}")
    # the floor of any Python-level encoder that keeps nan/inf exact: one Python call
    # around orjson, plus one scan of its output for the null that nan/inf became
    line = orjson.dumps(plain_record, option=opts)
    wrap_us = median_us(lambda r=plain_record: _wrapped_orjson(r, opts), args.number,
                        args.repeat)
    scan_us = median_us(lambda: line.rpartition(b"null"), args.number, args.repeat)
    empty_us = median_us(lambda: None, args.number, args.repeat)
    base = rows[1][1]["orjson (numpy opt)"]
    print(f"\nplain record, parts: a Python function only calling orjson {wrap_us:.2f} us "
          f"({wrap_us / base:.2f} x orjson); the null scan alone {scan_us - empty_us:.2f} us; "
          f"together {(wrap_us + scan_us - empty_us) / base:.2f} x orjson")
    numpy_us = rows[0][1]["memo dumps_line"]
    plain_ratio = rows[1][1]["memo dumps_line"] / rows[1][1]["orjson (numpy opt)"]
    print()
    print(f"target numpy record <= 1.5 us: {numpy_us:.2f} us "
          f"({'met' if numpy_us <= 1.5 else 'MISSED'})")
    print(f"target plain record <= 1.3 x orjson: {plain_ratio:.2f} x "
          f"({'met' if plain_ratio <= 1.3 else 'MISSED'})")


if __name__ == "__main__":
    main()
