"""Build hook (the metadata is in pyproject.toml): wheels carry the demo as genapps/demo/.

`genapps demo` runs pipelines/demo.yaml on data/; both stay where the checkout keeps them and are
copied into the built package as genapps/demo/pipelines/demo.yaml and genapps/demo/data/ (the
YAML's ../data paths hold there too). Editable installs use the checkout's files directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DEMO = ("pipelines/demo.yaml", "data")  # data/ is kept small (photos + digits, ~2 MB)


class BuildPyWithDemo(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "genapps" / "demo"
        for rel in DEMO:
            src, out = ROOT / rel, dest / rel
            if src.is_dir():
                shutil.copytree(src, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", "__pycache__"))
            elif src.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)


setup(cmdclass={"build_py": BuildPyWithDemo})
