"""Builds auditq._auditq over libauditq.a from this source tree.

Offline, with Debian's packages only (README "Python"):
    python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation --no-index ./bindings/python
`make bindings` builds the same module into build/python for the tests.

The static library comes from the Makefile (`make build/lib/libauditq.a`,
run here when missing): one list of sources, one set of flags. Its symbols
stay inside the extension (--exclude-libs), so another copy of libauditq in
the process cannot clash with it. AUDITQ_BUILD picks another build dir;
AUDITQ_WERROR=1 makes warnings errors (as `make WERROR=1`).
"""
import os
import subprocess
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BUILD = os.environ.get("AUDITQ_BUILD", "build")
LIB = ROOT / BUILD / "lib" / "libauditq.a"

if not (ROOT / "include" / "auditq.h").is_file():
    raise SystemExit(f"auditq: {ROOT}/include/auditq.h not found: build from the auditq source tree "
                     "(pip install ./bindings/python, not a copy of bindings/python alone)")
# A make above us (make bindings) passes its jobserver in MAKEFLAGS, but its
# descriptors do not reach this child: run this one serially, quietly.
env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
subprocess.check_call(["make", "-s", "-C", str(ROOT), f"BUILD={BUILD}", f"{BUILD}/lib/libauditq.a"], env=env)

cflags = ["-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-Wno-cast-function-type"]
if os.environ.get("AUDITQ_WERROR"):
    cflags.append("-Werror")

setup(
    name="auditq",
    version="0.1.0",
    description="Python binding of libauditq, the auditq audit-event producer",
    packages=["auditq"],
    package_data={"auditq": ["py.typed", "__init__.pyi"]},
    ext_modules=[
        Extension(
            "auditq._auditq",
            sources=["auditq/_auditq.c"],
            include_dirs=[str(ROOT / "include")],
            extra_compile_args=cflags,
            extra_objects=[str(LIB)],
            libraries=["hiredis", "msgpackc", "crypto", "pthread"],  # crypto: protect_fields HMAC
            extra_link_args=["-Wl,--exclude-libs,ALL"],
        )
    ],
    python_requires=">=3.9",
    zip_safe=False,
)
