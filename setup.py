"""Build hook for the compiled Skim-LSTM kernel and the tokenizer's scanner; the project metadata lives in pyproject.toml.

`pip install -e .` builds service/engine/_skimkernel.*.so in place. The extension is optional: without
a C compiler the install still succeeds and the engine falls back to the NumPy reference (logged).
No -march=native: the AVX2+FMA code path is compiled per function (target attributes) and chosen at
run time with __builtin_cpu_supports, so one build runs on any x86-64 CPU.
"""
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    _flags = ["/O2"]
else:
    _flags = ["-O3", "-std=c99", "-fno-math-errno", "-Wall"]

setup(
    ext_modules=[
        # the AntMan layers' kernel (service/engine/fast_antman.py; the reference runs them without it)
        Extension("service.engine._antmankernel", sources=["service/engine/_antmankernel.c"],
                  depends=["service/engine/_sk_simd.h"], extra_compile_args=_flags, optional=True),
        Extension(
            "service.engine._skimkernel",
            sources=["service/engine/_skimkernel.c"],
            depends=["service/engine/_sk_simd.h"],
            extra_compile_args=_flags,
            optional=True,
        ),
        # the tokenizer's scanner, vocabulary table and row gather (service/tokenizer.py falls back to its regex and numpy)
        Extension("service._tokenscan", sources=["service/_tokenscan.c"], extra_compile_args=_flags, optional=True),
    ]
)
