"""The two Dockerfiles, parsed (no image can be built here): pinned, non-root, runnable commands."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
OPERATOR = REPO / "operator" / "Dockerfile"
TRAINER = REPO / "trainer-image" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    argument: str


def parse(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        keyword, _, argument = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), argument.strip()))
        pending = []
    if pending:
        raise ValueError(f"line {start}: instruction continues past the end of the file")
    return instructions


def _final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def _exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.argument)
    wrong = f"line {instruction.line}: {instruction.keyword} must use the exec (JSON) form"
    assert isinstance(value, list), wrong
    assert all(isinstance(v, str) for v in value), wrong
    return value


def _only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse("# c\nFROM a:1 AS b\nRUN x \\\n  # inner\n  && y\nUSER 7\n")
    assert parsed == [
        Instruction(2, "FROM", "a:1 AS b"),
        Instruction(3, "RUN", "x && y"),
        Instruction(6, "USER", "7"),
    ]
    with pytest.raises(ValueError, match="line 1"):
        parse("RUN a \\\n")


@pytest.mark.parametrize("dockerfile", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_base_images_are_pinned(dockerfile: Path) -> None:
    stages: set[str] = set()
    for instruction in parse(dockerfile.read_text()):
        if instruction.keyword != "FROM":
            continue
        image, *alias = instruction.argument.split(" AS ")
        if image in stages:
            continue
        stages.update(a.strip() for a in alias)
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and re.search(r"\d", tag)), (
            f"{dockerfile.name} line {instruction.line}: pin {image} to a versioned tag"
        )
        assert tag != "latest"
        assert "latest" not in image


@pytest.mark.parametrize("dockerfile", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_runs_as_a_non_root_user(dockerfile: Path) -> None:
    final = _final_stage(parse(dockerfile.read_text()))
    users = [i for i in final if i.keyword == "USER"]
    assert users, f"{dockerfile.name}: the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].argument.partition(":")
    # Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
    assert user.isdigit(), f"USER {user}: use a numeric uid"
    assert int(user) > 0, "USER 0 is root"
    assert not group or (group.isdigit() and int(group) > 0)
    # Nothing after USER switches back to root.
    after = final[final.index(users[-1]) + 1 :]
    assert not any(i.keyword == "RUN" for i in after)


@pytest.mark.parametrize("dockerfile", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_ready_for_a_read_only_root_filesystem(dockerfile: Path) -> None:
    env = " ".join(
        i.argument for i in _final_stage(parse(dockerfile.read_text())) if i.keyword == "ENV"
    )
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env  # the chart mounts an emptyDir there


@pytest.mark.parametrize(
    ("dockerfile", "entrypoint"),
    [(OPERATOR, ["rewardops", "operator"]), (TRAINER, ["rewardops-trainer"])],
    ids=["operator", "trainer"],
)
def test_entrypoint_is_a_console_script(dockerfile: Path, entrypoint: list[str]) -> None:
    command = _exec_form(_only(parse(dockerfile.read_text()), "ENTRYPOINT"))
    assert command == entrypoint
    assert command[0] in SCRIPTS, f"{command[0]} is not in pyproject's [project.scripts]"


def test_entrypoint_subcommands_exist() -> None:
    import click

    from rewardops_operator.cli import main as rewardops
    from rewardops_trainer.cli import main as trainer

    assert isinstance(rewardops, click.Group)
    assert isinstance(trainer, click.Group)
    operator_command = _exec_form(_only(parse(OPERATOR.read_text()), "ENTRYPOINT"))[1]
    assert operator_command in rewardops.commands, "`rewardops operator` does not exist yet"
    assert {"train", "serve"} <= set(trainer.commands)


@pytest.mark.parametrize("dockerfile", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_copied_sources_exist(dockerfile: Path) -> None:
    for instruction in parse(dockerfile.read_text()):
        if instruction.keyword != "COPY" or instruction.argument.startswith("--from"):
            continue
        *sources, _destination = shlex.split(instruction.argument)
        for source in sources:
            assert (REPO / source).exists(), f"{dockerfile.name} line {instruction.line}: {source}"


def _pip_installs(dockerfile: Path) -> list[str]:
    runs = " && ".join(i.argument for i in parse(dockerfile.read_text()) if i.keyword == "RUN")
    return re.findall(r"pip install [^&]*?\"?\.\[(\w+)\]\"?", runs)


def test_operator_image_installs_no_torch() -> None:
    assert _pip_installs(OPERATOR) == ["operator"]
    names = {Requirement(r).name for r in EXTRAS["operator"]}
    assert not names & {"torch", "transformers", "peft"}, "the operator image must stay slim"


def test_trainer_image_keeps_the_base_torch() -> None:
    assert _pip_installs(TRAINER) == ["trainer"]
    base = _only(parse(TRAINER.read_text()), "FROM").argument
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", base)
    assert match, f"{base}: expected a pinned CUDA runtime PyTorch image"
    torch = next(Requirement(r) for r in EXTRAS["trainer"] if Requirement(r).name == "torch")
    # The trainer extra accepts the base's torch, so pip (constrained to it) never replaces it.
    assert Version(match[1]) in torch.specifier
    assert "--constraint" in " ".join(i.argument for i in parse(TRAINER.read_text()))


def _user_id(dockerfile: Path) -> int:
    users = [i for i in _final_stage(parse(dockerfile.read_text())) if i.keyword == "USER"]
    return int(users[-1].argument.partition(":")[0])


def test_image_users_match_the_pods_that_run_them() -> None:
    import yaml

    from rewardops_operator.kube.job import USER_ID

    # The training Job pins runAsUser: it must be the user the trainer image owns files as.
    assert _user_id(TRAINER) == USER_ID
    chart_values = yaml.safe_load((REPO / "charts" / "rewardops" / "values.yaml").read_text())
    assert _user_id(OPERATOR) == chart_values["podSecurityContext"]["runAsUser"]
    # The serving example runs the trainer image too.
    serving = list(yaml.safe_load_all((REPO / "examples/serving/deployment.yaml").read_text()))
    deployment = next(d for d in serving if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == USER_ID


@pytest.mark.parametrize("gpus", [1, 4])
def test_training_job_command_exists_in_the_trainer_image(gpus: int) -> None:
    from rewardops_operator.kube.job import trainer_command

    command = trainer_command(gpus)
    assert command[0] == "rewardops-trainer", command
    assert command[0] in SCRIPTS
