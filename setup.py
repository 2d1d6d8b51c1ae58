"""Build hook: ship the top-level agents/ and envs/ YAML folders inside the package (rlmem/_data/).

The metadata is in pyproject.toml. In the repository the presets and suites live at the top
level, where a reader sees them first; a wheel (and a non-editable install) carries copies
under rlmem/_data/, which rlmem.shipped reads when present.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("agents", "envs")


class BuildWithShippedYAML(build_py):
    """build_py that also copies agents/*.yaml and envs/*.yaml into the built package's _data/."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for folder in SHIPPED:
            target = Path(self.build_lib) / "rlmem" / "_data" / folder
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted((root / folder).glob("*.yaml")):
                shutil.copyfile(path, target / path.name)


setup(cmdclass={"build_py": BuildWithShippedYAML})
