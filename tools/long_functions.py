#!/usr/bin/env python3
"""List the C++ functions longer than a limit (issue 14: "no function over ~80 lines").

    python3 tools/long_functions.py [--max 80] [paths...]   (default path: cpp)

Function extents come from Universal Ctags (`ctags --fields=+ne`), which must be installed.
Lambdas are measured inside the function that holds them, not on their own. The transliterated
SGP4 math (cpp/src/orbit/sgp4*.cpp, deep_space.cpp) is left out: it follows the reference
code line by line. Exits 1 when a function is over the limit, so CI can run it.
"""
import argparse
import fnmatch
import shutil
import subprocess
import sys

EXEMPT = ["cpp/src/orbit/sgp4*.cpp", "cpp/src/orbit/deep_space.cpp"]


def functions(paths):
    """(lines, path, name, first line) of every function definition under `paths`."""
    out = subprocess.run(
        ["ctags", "-R", "--languages=C++", "--kinds-C++=f", "--fields=+ne", "-o", "-", *paths],
        check=True, capture_output=True, text=True).stdout
    for row in out.splitlines():
        cols = row.split("\t")
        if len(cols) < 4 or cols[0].startswith("__anon"):
            continue
        fields = dict(c.split(":", 1) for c in cols[3:] if ":" in c)
        if "line" in fields and "end" in fields:
            first, last = int(fields["line"]), int(fields["end"])
            yield last - first + 1, cols[1], cols[0], first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=80, help="the longest allowed (lines)")
    parser.add_argument("paths", nargs="*", default=["cpp"])
    args = parser.parse_args()
    if not shutil.which("ctags"):
        sys.exit("long_functions.py needs Universal Ctags (apt-get install universal-ctags)")
    long = sorted((f for f in functions(args.paths)
                   if f[0] > args.max and not any(fnmatch.fnmatch(f[1], e) for e in EXEMPT)),
                  reverse=True)
    for lines, path, name, first in long:
        print(f"{lines:5d}  {path}:{first}  {name}")
    return 1 if long else 0


if __name__ == "__main__":
    sys.exit(main())
