"""The docs do not lie: every relative link resolves, every setting is documented and every
documented setting exists, and the README stays a newcomer's path."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices

from creations.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    broken = [target for target in LINK.findall(doc.read_text())
              if "://" not in target and not (doc.parent / target).exists()]
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"


def environment_names(name: str, field) -> set[str]:
    """The variables a setting is read from: PHOENIX_<NAME>, or the names of its aliases."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str) and choice.isupper()}
    return {f"PHOENIX_{name.upper()}"}


def test_every_setting_is_documented_and_every_documented_setting_exists():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`((?:PHOENIX_|FIRESTORE_|K_)[A-Z0-9_]+|PORT)`", doc))
    names = {name: environment_names(name, field) for name, field in Settings.model_fields.items()}
    missing = sorted(name for name, variables in names.items() if not variables & documented)
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    read = set().union(*names.values()) | {f"PHOENIX_{n.upper()}" for n in names}
    assert documented <= read, f"docs/configuration.md names variables no setting reads: {sorted(documented - read)}"


def test_the_readme_stays_a_newcomers_path():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 180
    for heading in ("## The two commands", "## One request through the files", "## Adding a step"):
        assert heading in readme
    assert "make demo" in readme and "make test" in readme
