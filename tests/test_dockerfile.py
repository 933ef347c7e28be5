"""The Dockerfile, checked statically (no Docker engine here)."""

import ast
import fnmatch
import importlib.metadata
import re
import shlex
import sys

from tests.support import REPO

TEXT = (REPO / "Dockerfile").read_text()
# Join continuation lines into instructions.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n\s*", " ", TEXT).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def instr(name: str) -> list[str]:
    return [i[len(name) + 1 :] for i in INSTRUCTIONS if i.upper().startswith(name + " ")]


def test_base_image_is_pinned_slim_python():
    (base,) = instr("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def test_runs_as_a_non_root_user():
    users = instr("USER")
    assert users and users[-1] not in ("root", "0")
    assert INSTRUCTIONS.index(f"USER {users[-1]}") < INSTRUCTIONS.index(instr_line("CMD"))


def instr_line(name: str) -> str:
    return next(i for i in INSTRUCTIONS if i.upper().startswith(name + " "))


def test_command_and_healthcheck():
    assert instr("CMD") == ['["python", "-m", "service", "serve"]']
    (health,) = instr("HEALTHCHECK")
    assert "/health/ready" in health
    env = " ".join(instr("ENV"))
    assert "VIGIL_HOST=0.0.0.0" in env
    assert "VIGIL_MODEL_PATH=/app/models/model.joblib" in env


def test_healthcheck_command_is_valid_python():
    (health,) = instr("HEALTHCHECK")
    cmd = shlex.split(health.split(" CMD ", 1)[1])
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "HEALTHCHECK", "exec")


def test_copied_sources_exist_and_pass_dockerignore():
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        keep = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path.split("/")[0], pat):
                keep = negate
        return keep

    for copy in instr("COPY"):
        *sources, _dest = copy.split()
        for src in sources:
            assert (REPO / src).exists(), src
            assert sent(src.rstrip("/")), f"{src} is excluded by .dockerignore"
    assert not sent("models") and not sent(".venv") and not sent("monitor/.env")


def test_everything_the_service_imports_is_pinned_in_requirements():
    """The image and `make run` install only requirements.txt: every third-party module that
    service/ or tester.py imports must come from a distribution pinned there."""
    pinned = {
        re.split(r"[=<>\[]", line)[0].strip().lower().replace("_", "-")
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    dists = importlib.metadata.packages_distributions()
    files = [*sorted((REPO / "service").rglob("*.py")), REPO / "tester.py"]
    assert len(files) > 50, "service/ and its subpackages should all be read"
    missing = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "service":
                    continue
                owners = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not owners & pinned:
                    where = path.relative_to(REPO)
                    missing.add(f"{where}: {top} ({', '.join(sorted(owners))})")
    assert not missing, f"imported but not pinned in requirements.txt: {sorted(missing)}"
