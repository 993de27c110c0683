"""Declares the Cython extensions (ext/*.pyx -> getbatch.archive._c*).

Each extension has a pure-Python twin, so a failed or skipped build is not fatal:
with no compiler, or with GETBATCH_PURE=1 at build time, the package installs
without extensions and the twins are used. A build that fails says so on the
installing terminal: pip hides the output of builds that succeed, so the warning is
also written to /dev/tty when there is one (`getbatch --version` shows the backend too).
"""
import glob
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _warn(reason):
    msg = (f"\n*** getbatch: {reason}.\n*** getbatch will run on its pure-Python twins, which are "
           "several times slower on the hot paths.\n*** Install a C compiler and the Python "
           "headers (Debian: apt install gcc python3-dev) and reinstall;\n*** `getbatch --version` "
           "shows which backend is in use.\n\n")
    print(msg, file=sys.stderr)
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(msg)
    except OSError:
        pass


def _extensions():
    if os.environ.get("GETBATCH_PURE") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not available, so the extensions are not built")
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
            _warn(f"{pyx} could not be translated by Cython ({exc})")
    return exts


class OptionalBuildExt(build_ext):
    """Falls back to the pure-Python twins when the C compiler is missing or fails, and says
    so once, naming what was not built."""

    def run(self):
        self._failed = []
        try:
            super().run()
        except Exception as exc:  # no compiler at all
            self._failed.append(("all extensions", exc))
        if self._failed:
            names = ", ".join(name for name, _ in self._failed)
            _warn(f"the C extensions were not built ({names}: {str(self._failed[0][1])[:200]})")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._failed.append((ext.name, exc))


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
