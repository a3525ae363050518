"""The README's two commands are the ones CI and users run."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_two_commands_demo_then_tests():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("hwnas demo")
    assert "pytest" in commands[1]
    for command in commands:
        assert command.startswith("python3.11 -m venv .venv && .venv/bin/pip install")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in [line.strip() for line in ci]
