import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import pathlib
import typing
import uuid

import msgspec
import numpy as np
import orjson
import pytest

from memo import serialize
from memo.serialize import SerializationError, dumps, dumps_line, loads


def strict_json(data: bytes):
    """Parse like jq/pandas would: no NaN/Infinity literals allowed."""
    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    return json.loads(data, parse_constant=refuse)


def roundtrip(value):
    data = dumps({"v": value})
    strict_json(data)
    return loads(data)["v"]


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Pair(typing.NamedTuple):
    a: int
    b: str


class Cfg(msgspec.Struct):
    lr: float
    layers: list


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64",
                                   "uint8", "uint16", "uint32", "uint64"])
def test_numpy_integers_are_numbers(dtype):
    info = np.iinfo(dtype)
    for value in (info.min, info.max):
        assert roundtrip(np.dtype(dtype).type(value)) == int(value)


def test_numpy_bool():
    assert dumps(np.bool_(True)) == b"true"
    assert roundtrip(np.bool_(False)) is False


@pytest.mark.parametrize("value, expected", [
    (np.float64(0.1), 0.1),
    (np.float32(0.1), 0.1),  # shortest repr, not 0.10000000149011612
    (np.float32(1 / 3), 0.33333334),
    (np.float16(0.5), 0.5),
])
def test_numpy_floats_shortest_repr(value, expected):
    assert roundtrip(value) == expected


def test_float32_written_as_shortest_text():
    assert dumps(np.float32(0.1)) == b"0.1"
    assert dumps(np.array([0.1, 0.2], dtype=np.float32)) == b"[0.1,0.2]"


def test_float16_reads_back_to_the_same_float16():
    x = np.float16(0.1)
    assert np.float16(roundtrip(x)) == x


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_floats_roundtrip_exactly(value):
    out = roundtrip(value)
    assert isinstance(out, float)
    assert (math.isnan(out) and math.isnan(value)) or out == value


def test_nonfinite_encoding_keeps_columns_typed():
    assert dumps({"loss": -math.inf, "acc": 0.5}) == (
        b'{"loss":null,"acc":0.5,"$nonfinite":{"/loss":"-inf"}}')
    assert dumps({"a/b": [1.0, np.float32("nan")]}) == (
        b'{"a/b":[1.0,null],"$nonfinite":{"/a~1b/1":"nan"}}')
    # a bare value (not a record) has nowhere to list them: a tag
    assert dumps(math.inf) == b'{"$float":"inf"}'
    assert loads(dumps(math.inf)) == math.inf


def test_nonfinite_key_is_reserved():
    for record in ({"x": math.nan, "$nonfinite": 1}, {"$nonfinite": {"/x": "inf"}}):
        with pytest.raises(SerializationError, match="reserves"):
            dumps(record)


def test_nonfinite_inside_numpy_arrays():
    out = roundtrip(np.array([[1.0, np.nan], [np.inf, -np.inf]]))
    assert out[0][0] == 1.0 and math.isnan(out[0][1])
    assert out[1] == [math.inf, -math.inf]


def test_none_stays_null():
    assert dumps({"a": None, "b": "nullable"}) == b'{"a":null,"b":"nullable"}'
    assert roundtrip(None) is None


@pytest.mark.parametrize("value, expected", [
    (complex(1, -2), complex(1, -2)),
    (np.complex64(1 + 2j), complex(1, 2)),
    (np.complex128(complex(0.5, math.inf)), complex(0.5, math.inf)),
])
def test_complex_roundtrips(value, expected):
    assert roundtrip(value) == expected


def test_arrays_of_any_layout():
    a = np.arange(12).reshape(3, 4)
    assert roundtrip(a) == a.tolist()
    assert roundtrip(a[:, ::2]) == a[:, ::2].tolist()  # non-contiguous
    assert roundtrip(a.T) == a.T.tolist()  # Fortran order
    assert roundtrip(np.array(5)) == 5  # 0-d
    assert roundtrip(np.zeros((0, 3))) == []
    obj = np.array([1, "a", None, np.float32(0.1)], dtype=object)
    assert roundtrip(obj) == [1, "a", None, 0.1]


def test_numpy_datetime64():
    assert roundtrip(np.datetime64("2024-05-06T07:08:09")) == "2024-05-06T07:08:09"
    arr = np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]")
    assert roundtrip(arr) == ["2024-01-01T00:00:00", "2024-01-02T00:00:00"]


def test_datetimes_are_iso_8601():
    tz = dt.timezone.utc
    assert roundtrip(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz)) == "2024-01-02T03:04:05+00:00"
    assert roundtrip(dt.date(2024, 1, 2)) == "2024-01-02"
    assert roundtrip(dt.time(3, 4, 5)) == "03:04:05"
    assert roundtrip(dt.timedelta(minutes=1, microseconds=500)) == 60.0005


def test_strings_for_uuid_decimal_path_enum():
    u = uuid.UUID(int=7)
    assert roundtrip(u) == str(u)
    assert roundtrip(decimal.Decimal("1.10000000000000000000001")) == "1.10000000000000000000001"
    assert roundtrip(pathlib.Path("/a/b")) == "/a/b"
    assert roundtrip(Color.RED) == "red"
    assert roundtrip(Level.HIGH) == 3


def test_collections():
    assert roundtrip({3, 1, 2}) == [1, 2, 3]
    assert sorted(roundtrip(frozenset({"b", "a"}))) == ["a", "b"]
    assert sorted(roundtrip({1, "a"}), key=str) == [1, "a"]  # unsortable: any order
    assert roundtrip((1, (2, 3))) == [1, [2, 3]]
    assert roundtrip(Pair(1, "x")) == [1, "x"]


def test_dataclass_and_struct():
    assert roundtrip(Point(1, 0.5)) == {"x": 1, "y": 0.5}
    assert roundtrip(Cfg(lr=0.1, layers=[np.int64(3)])) == {"lr": 0.1, "layers": [3]}
    assert roundtrip(Point(1, math.inf)) == {"x": 1, "y": math.inf}


def test_bytes_roundtrip():
    assert roundtrip(b"\x00\xffabc") == b"\x00\xffabc"
    assert roundtrip(bytearray(b"xy")) == b"xy"
    assert dumps(b"hi") == b'{"$bytes":"aGk="}'


def test_big_ints():
    big = 12345678901234567890123456789  # not exactly representable as a float
    assert roundtrip(big) == big and type(roundtrip(big)) is int
    assert roundtrip([big, -big]) == [big, -big]
    assert roundtrip(2**70) == 2**70
    assert roundtrip(-(2**100)) == -(2**100)
    assert roundtrip([2**64, 1.5]) == [2**64, 1.5]


def test_non_string_keys():
    assert roundtrip({1: "a", 2.5: "b", None: "c"}) == {"1": "a", "2.5": "b", "null": "c"}
    assert roundtrip({False: "d"}) == {"false": "d"}
    assert roundtrip({np.int64(4): 1, Color.RED: 2}) == {"4": 1, "red": 2}
    assert math.isnan(roundtrip({2**70: math.nan})["1180591620717411303424"])


def test_every_line_is_one_line_of_strict_json():
    record = {"s": "line\nbreak", "f": math.nan, "a": np.arange(3)}
    line = dumps_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    strict_json(line)


def test_unknown_type_error_names_key_path_and_type():
    class Opaque:
        pass

    with pytest.raises(SerializationError) as info:
        dumps({"a": [1, {"b": Opaque()}]})
    msg = str(info.value)
    assert "['a'][1]['b']" in msg and "Opaque" in msg
    assert info.value.path == "['a'][1]['b']"


def test_fallback_is_opt_in():
    class Opaque:
        def __repr__(self):
            return "<opaque>"

    assert loads(dumps({"x": Opaque()}, fallback=repr)) == {"x": "<opaque>"}


def test_tags_only_restore_exact_shapes():
    # a user dict with a $ key that is not a valid tag stays a dict
    assert roundtrip({"$float": "huge"}) == {"$float": "huge"}
    assert roundtrip({"$bytes": "not base64!"}) == {"$bytes": "not base64!"}
    assert roundtrip({"$float": "inf", "other": 1}) == {"$float": "inf", "other": 1}


def test_plain_records_use_orjson_bytes():
    record = {"a": 1, "b": "x", "c": [1.5, 2], "d": {"e": True}}
    assert dumps_line(record) == orjson.dumps(record) + b"\n"


def test_pandas_and_polars_read_the_lines(tmp_path):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    path = tmp_path / "x.jsonl"
    rows = [{"a": np.int32(i), "loss": math.inf if i == 1 else 0.5, "t": np.float32(0.1)}
            for i in range(3)]
    path.write_bytes(b"".join(dumps_line(r) for r in rows))
    assert pd.read_json(path, lines=True)["a"].tolist() == [0, 1, 2]
    frame = pl.read_ndjson(path)
    assert frame["t"].to_list() == [0.1, 0.1, 0.1]
    assert frame["loss"].to_list() == [0.5, None, 0.5]  # typed column; the exact value via load
    assert pd.read_json(path, lines=True)["loss"].dtype == "float64"


def test_importing_memo_does_not_import_numpy():
    """numpy is optional and slow to import (and its BLAS threads make every fork of a
    Runner's workers dearer): memo uses it only once the program has imported it."""
    import subprocess
    import sys
    code = "import sys, memo; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=pathlib.Path(serialize.__file__).parents[1])
    assert out.stdout.strip() == "False", out.stderr


def test_numpy_values_imported_after_memo_are_serialized():
    import subprocess
    import sys
    code = ("import memo.serialize as s, numpy as np\n"
            "print(s.dumps({'x': np.float32(0.1), 'a': np.arange(3)[::2]}).decode())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=pathlib.Path(serialize.__file__).parents[1])
    assert out.stdout.strip() == '{"x":0.1,"a":[0,2]}', out.stderr


def test_works_without_numpy(tmp_path):
    import subprocess
    import sys
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "import math, memo.serialize as s\n"
        "assert s._numpy() is None\n"
        "assert s.loads(s.dumps({'x': math.inf, 'y': (1, 2)})) == {'x': math.inf, 'y': [1, 2]}\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=pathlib.Path(serialize.__file__).parents[1])
    assert out.stdout.strip() == "ok", out.stderr
