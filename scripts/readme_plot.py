"""Regenerate docs/img/demo.png, the README's picture: the demo sweep drawn by memo.plot.

    python scripts/readme_plot.py [--out docs/img/demo.png]

Runs ``python -m memo demo`` in a temporary folder (it writes results.jsonl there)
and draws the estimated probability of a shared birthday against the class size,
one line per number of simulations. Needs the 'plot' extra (altair,
vl-convert-python); rendering is offline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import memo  # noqa: E402  (this checkout's memo, also for the demo's subprocess)
from memo.plot import save  # noqa: E402

MAX_BYTES = 200_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "demo.png"))
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "memo", "demo", "--jobs", "2"], cwd=tmp, env=env,
                       check=True, stdout=subprocess.DEVNULL)
        chart = memo.plot(os.path.join(tmp, "results.jsonl"), x="class_size", y="est_proba",
                          color="n_sim", width=520, height=260,
                          title="The birthday paradox, estimated by memo demo")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save(chart, out, scale=1.5)
    size = out.stat().st_size
    print(f"wrote {out} ({size} bytes)")
    if size > MAX_BYTES:
        print(f"{out} is over {MAX_BYTES} bytes: draw it smaller", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
