"""A job for the data-input tests: prints what it was given and what it reads there."""

import os
import pathlib
import sys

data = pathlib.Path(sys.argv[sys.argv.index("--data") + 1])
files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
print(f"JOB data={data} files={files}", flush=True)
print(f"JOB a={(data / 'a.txt').read_text().strip()}", flush=True)
one = os.environ.get("TFBUILD_INPUT_VOCAB")
if one:
    print(f"JOB vocab={one} {pathlib.Path(one).read_text().strip()}", flush=True)
