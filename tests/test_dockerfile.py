"""The Dockerfile takes plugins from a folder of wheels and from an index, through build arguments
that template.yaml passes.

No Docker engine runs here, so the build stage is played as Docker would: its COPY lines copy the
repository into a temporary build folder, then its install RUN line runs as the shell script it is,
with the build arguments in its environment, into a fresh virtual environment. What that does not
prove (the base image, Docker's own COPY and ARG handling) is said in docs/deploy-plugins.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from host.cli.new import plugin_files
from isolated_venv import isolated_venv

ROOT = Path(__file__).resolve().parent.parent
BUILD = "/tmp/build"  # where the Dockerfile's build stage works
TIMEOUT = 600  # pip builds the host and two plugins; generous on a loaded machine


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (keyword, arguments), continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    return found


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the build stage ``FROM ... AS name``, up to the next ``FROM``."""
    found, inside = [], False
    for keyword, rest in instructions():
        if keyword == "FROM":
            inside = rest.lower().endswith(f" as {name}")
        elif inside:
            found.append((keyword, rest))
    assert found, f"the Dockerfile has no stage {name!r}"
    return found


def _install_line(instructions_of_stage: list[tuple[str, str]]) -> str:
    [install] = [rest for keyword, rest in instructions_of_stage if keyword == "RUN" and "pip install" in rest]
    return install


def build_args() -> dict[str, str]:
    """Each ``ARG NAME="default"`` of the Dockerfile."""
    args = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:  # a stage's bare ARG NAME takes the global default
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
    return args


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub...) read as plain values."""


_CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_the_plugin_sources_are_build_arguments_and_template_yaml_passes_them():
    args = build_args()
    assert {"PLUGINS", "PLUGIN_WHEELS", "PLUGIN_INDEX_URL"} <= set(args)
    assert args["PLUGIN_WHEELS"] == "plugin-wheels" and (ROOT / "plugin-wheels").is_dir()
    for path in args["PLUGINS"].split():
        assert (ROOT / path / "pyproject.toml").is_file(), f"the default PLUGINS name a folder of this repository: {path}"

    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    functions = [r for r in template["Resources"].values() if r.get("Type") == "AWS::Serverless::Function"]
    [metadata] = [f["Metadata"] for f in functions if "Metadata" in f]
    assert metadata["Dockerfile"] == "Dockerfile"
    passed = metadata["DockerBuildArgs"]
    assert set(passed) == {"PLUGINS", "PLUGIN_WHEELS", "PLUGIN_INDEX_URL"}
    assert passed == {name: args[name] for name in passed}, "template.yaml passes the Dockerfile's defaults"

    # Both images (Lambda, and the server for ECS or Kubernetes) install the plugins the same way.
    lambda_install = _install_line(stage("lambda"))
    for used in ("${PLUGINS}", "--find-links plugin-wheels", "$PLUGIN_INDEX_URL", ".[aws]"):
        assert used in lambda_install
    for name in ("lambda", "server"):
        instructions_of_stage = stage(name)
        declared = {rest for keyword, rest in instructions_of_stage if keyword == "ARG"}
        assert {"PLUGINS", "PLUGIN_WHEELS", "PLUGIN_INDEX_URL"} <= declared, f"stage {name} declares the arguments"
        assert "${PLUGIN_WHEELS} /tmp/build/plugin-wheels/" in [rest for keyword, rest in instructions_of_stage if keyword == "COPY"]
        pip = _install_line(instructions_of_stage)
        assert pip.split(" && rm -rf /tmp/build")[0] == lambda_install.split(" && rm -rf /tmp/build")[0], name


def _copy(source: Path, target: Path) -> None:
    """Docker's COPY of one source: a file into a folder, a folder's contents into the target (.dockerignore's rules)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "tests", "build", "dist")
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)


def play_build_stage(context: Path, build: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the Lambda stage's COPY lines and its install RUN line with ``build`` standing for /tmp/build.

    Only that stage: the server stage's RUN line also adds a system user, which is no test's business.
    """
    for keyword, rest in stage("lambda"):
        if keyword == "COPY":
            *sources, target = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], rest).split()
            for source in sources:
                _copy(context / source, Path(target.replace(BUILD, str(build))))
        elif keyword == "RUN" and "pip install" in rest:
            script = rest.replace(BUILD, str(build))
            return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    raise AssertionError("the Dockerfile has no RUN line with pip install")


def _wheel(python: Path, name: str, where: Path, out: Path) -> Path:
    """Generate plugin ``name`` in ``where`` and build its wheel into ``out``, as its own repository's CI would."""
    for relative, text in plugin_files(name, schedules=False).items():
        (where / relative).parent.mkdir(parents=True, exist_ok=True)
        (where / relative).write_text(text)
    built = subprocess.run([str(python), "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(where)],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = out.glob(f"{name.replace('-', '_')}-*.whl")
    return wheel


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_install_step_takes_plugins_from_a_wheel_folder_and_from_an_index(tmp_path):
    bin_dir = isolated_venv(tmp_path / "venv", TIMEOUT)
    python = bin_dir / "python"
    # The app's context: this repository plus a folder of wheels built in the plugin's own repository.
    context = tmp_path / "context"
    shutil.copytree(ROOT, context, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "bench", "docs",
                                                                "__pycache__", "*.egg-info", ".pytest_cache"))
    _wheel(python, "acme-billing", tmp_path / "acme-billing", context / "dist-plugins")
    # And a package index (PEP 503's simple layout, as a private index serves it) with another plugin.
    index_wheel = _wheel(python, "acme-reports", tmp_path / "acme-reports", tmp_path / "built")
    project = tmp_path / "index" / "acme-reports"
    project.mkdir(parents=True)
    shutil.copy2(index_wheel, project / index_wheel.name)
    (project / "index.html").write_text(f'<a href="{index_wheel.name}">{index_wheel.name}</a>\n')

    env = {key: value for key, value in os.environ.items() if not key.startswith(("LETSGO_", "PIP_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PLUGINS="acme-reports plugins/example_orders",
        PLUGIN_WHEELS="dist-plugins",
        PLUGIN_INDEX_URL=(tmp_path / "index").as_uri(),
    )
    build = tmp_path / "build"
    installed = play_build_stage(context, build, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert not build.exists(), "the build folder is removed"

    frozen = subprocess.run([str(bin_dir / "letsgo-worker"), "plugins", "--freeze"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert frozen.returncode == 0, frozen.stderr
    for entry_point in ("acme_billing = acme_billing.plugin (acme-billing 0.1.0)",
                        "acme_reports = acme_reports.plugin (acme-reports 0.1.0)",
                        "example_orders = example_orders (example-orders 0.1.0)"):
        assert entry_point in frozen.stdout, frozen.stdout
    where = subprocess.run([str(python), "-c", "import acme_billing, acme_reports; print(acme_billing.__file__)"],
                           capture_output=True, text=True, timeout=60)
    assert str(tmp_path / "venv") in where.stdout, "installed into the image's environment, not from the sources"
