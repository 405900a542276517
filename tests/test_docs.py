"""The README's configuration table documents every setting, and only real ones."""

import re
from pathlib import Path

from app.core.config import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"RELATED_{field.upper()}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == {env_name(name) for name in Settings.model_fields}
