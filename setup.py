"""Declares the Cython extensions (ext/*.pyx -> getbatch.archive._c*).

Each extension has a pure-Python twin, so a failed or skipped build is not fatal:
with no compiler, or with GETBATCH_PURE=1 at build time, the package installs
without extensions and the twins are used.
"""
import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _extensions():
    if os.environ.get("GETBATCH_PURE") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("getbatch: Cython not available, installing the pure-Python build", file=sys.stderr)
        return []
    from setuptools import Extension

    directives = {"boundscheck": False, "wraparound": False, "cdivision": True,
                  "initializedcheck": False}
    exts = []
    for pyx in sorted(glob.glob(os.path.join("ext", "*.pyx"))):
        mod = os.path.splitext(os.path.basename(pyx))[0]
        ext = Extension(f"getbatch.archive.{mod}", [pyx], extra_compile_args=["-O3"])
        try:
            exts.extend(cythonize([ext], language_level=3, compiler_directives=directives))
        except Exception as exc:  # one broken .pyx must not block the others
            print(f"getbatch: {pyx} not translated ({exc}); using its pure-Python twin",
                  file=sys.stderr)
    return exts


class OptionalBuildExt(build_ext):
    """Falls back to the pure-Python twins when the C compiler is missing or fails."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            print(f"getbatch: extensions not built ({exc}); using pure Python", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"getbatch: {ext.name} not built ({exc}); using its pure-Python twin", file=sys.stderr)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
