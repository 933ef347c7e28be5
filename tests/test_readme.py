"""The README documents what users rely on."""

import re

from service.settings import Settings
from tests.support import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `(VIGIL_[A-Z_]+)` \| `([^`]*)` \|", README, re.M))
    for name, field in Settings.model_fields.items():
        var = f"VIGIL_{name.upper()}"
        assert var in rows, f"{var} is not in the README's settings table"
        default = field.default
        if default is None:
            shown = ""
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        assert rows[var] == shown, f"{var}: README says {rows[var]}, code says {shown}"


def test_the_two_commands_come_first():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
