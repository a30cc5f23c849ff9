"""The layers of streamdet, read from its imports (parsed with ast: nothing of it is imported).

Frames flow one way, capture -> inference -> alert, with metrics and the web watching from the
side (STYLE.md 13): a package imports only what its row of ``MAY_IMPORT`` names, the rows form
no cycle, and so neither do the packages. Every import counts, also one inside a function or
under ``TYPE_CHECKING``: either way one package is written against the other's objects.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Who may import whom. A row is a package of streamdet (a top-level module such as
# streamdet/log.py is its own package, the root's __init__ is "streamdet"); an entry is a
# package ("capture": any of its modules) or one module ("capture.ring": that module only; the
# rest of capture is its internals). A package without a row fails until it is given one.
# The rows of handoff, lifecycle, snapshots and learning are for what other branches of
# issue 14 add (the stage hand-offs and snapshots, the stages' lifecycle, one learning workflow).
MAY_IMPORT: dict[str, set[str]] = {
    # the ground floor: plain types, errors, logging, numbers
    "streamdet": set(),
    "errors": set(),
    "log": set(),
    "frames": set(),
    "footage": set(),
    "yamlfile": set(),
    "progress": set(),
    "scoring": set(),
    "views": set(),  # where a view is against a reference (health, the objects' registration)
    # the configuration, and its checks against the machine
    "config": {"errors", "log", "yamlfile"},
    "preflight": {"config", "errors"},
    "reload": {"config"},
    # pure nn.Modules: they know no stage and no config (but the kinds' names, kept there)
    "models": {"config.models", "errors", "frames", "views"},
    # the stages, in the order frames flow; metrics holds the counters they update. A stage
    # never imports a later stage, and an earlier one only through its hand-off (inference
    # reads capture's frame ring); alert sees neither capture nor inference.
    "handoff": {"errors", "frames"},
    "lifecycle": {"errors"},
    "snapshots": {"frames", "handoff"},
    "metrics": {"frames", "handoff", "snapshots"},
    "capture": {"config", "errors", "footage", "frames", "log"},
    # one learning workflow (footage, learn, calibrate, save) for run, train, eval, benchmarks
    "learning": {
        "capture.convert",
        "capture.stage",
        "config",
        "errors",
        "frames",
        "models",
        "scoring",
        "views",
    },
    "inference": {
        "capture.ring",
        "config",
        "errors",
        "frames",
        "handoff",
        "learning",
        "log",
        "metrics",
        "models",
        "preflight",
        "scoring",
        "snapshots",
    },
    "alert": {
        "config",
        "errors",
        "footage",
        "frames",
        "handoff",
        "learning.health",
        "lifecycle",
        "log",
        "scoring",
        "snapshots",
    },
    # offline: evaluation on labelled footage, with the same rules and frame conversion
    "eval": {"alert.rules", "capture.convert", "errors", "learning", "models", "scoring"},
    # watching from the side: the HTTP API reads the stages
    "web": {
        "alert",
        "capture",
        "config",
        "errors",
        "frames",
        "inference",
        "log",
        "reload",
        "snapshots",
    },
    # fleet mode: membership, camera placement, checkpoints over NATS; the App hands it control
    "fleet": {"config", "errors", "log"},
    # the edge: wiring, commands, consoles
    "probe": {"capture", "errors", "log"},
    "console": {"capture"},
    "demo": {"config"},
    "app": {
        "alert",
        "capture",
        "config",
        "errors",
        "fleet",
        "frames",
        "handoff",
        "inference",
        "learning",
        "lifecycle",
        "metrics",
        "preflight",
        "reload",
        "streamdet",
        "web",
    },
    "pipeline_console": {"app", "console", "frames"},
    "cli": {
        "app",
        "capture",
        "config",
        "console",
        "demo",
        "errors",
        "eval",
        "fleet",  # fleet-cameras: the fleet's camera list
        "learning",
        "log",
        "models",
        "pipeline_console",
        "preflight",
        "probe",
        "progress",
        "streamdet",
    },
    "__main__": {"cli"},
}

# Packages whose __init__ re-exports (and so loads) their modules. Any other package's
# __init__ imports nothing, so that importing one of its modules loads that module alone:
# eval's dataset reader wants capture.convert, not capture's threads through capture/__init__.
REEXPORTING = {"config"}

# KNOWN: imports that break the table and are being removed (test_known_imports_are_still_there
# names the entries that are gone). Empty since learning in place left the inference loop;
# nothing new is added to it.
KNOWN: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported(path: Path) -> Iterator[str]:
    """The streamdet modules ``path`` imports; ``from a import b`` is ``a.b`` if b is a module."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
            names = [
                f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names
            ]
        else:
            continue
        yield from (name for name in names if name.split(".")[0] == "streamdet")


def imports(root: Path = ROOT / "streamdet") -> set[tuple[str, str]]:
    """Every (importer, imported) pair of modules under ``root``."""
    return {(module_name(f), name) for f in sorted(root.rglob("*.py")) for name in imported(f)}


def package(module: str) -> str:
    """``streamdet.capture.ring`` -> ``capture``; ``streamdet.log`` -> ``log``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def allowed(importer: str, target: str) -> bool:
    entries = MAY_IMPORT.get(package(importer), set())
    name = target.removeprefix("streamdet.")
    return any(name == entry or name.startswith(entry + ".") for entry in entries)


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` (its first node repeated at the end), or [] when it has none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return []


def package_graph(edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for importer, target in edges:
        if package(importer) != package(target):
            graph.setdefault(package(importer), set()).add(package(target))
    return graph


def crosses(importer: str, target: str, component: list[str]) -> bool:
    """Whether an import goes from one package of ``component`` (a cycle) to another."""
    ends = (package(importer), package(target))
    return ends[0] != ends[1] and set(ends) <= set(component)


def test_every_package_has_a_row_of_the_table() -> None:
    packages = {package(m) for edge in imports() for m in edge}
    packages |= {package(module_name(f)) for f in (ROOT / "streamdet").rglob("*.py")}
    missing = sorted(packages - set(MAY_IMPORT))
    assert not missing, f"give these packages a row of MAY_IMPORT: {missing}"


def test_the_table_has_no_cycle() -> None:
    graph = {row: {entry.split(".")[0] for entry in entries} for row, entries in MAY_IMPORT.items()}
    assert cycle(graph) == []


def test_packages_import_only_what_their_row_allows() -> None:
    wrong = sorted(
        (importer, target)
        for importer, target in imports() - KNOWN
        if package(importer) != package(target) and not allowed(importer, target)
    )
    assert not wrong, "imports against MAY_IMPORT:\n" + "\n".join(f"{a} -> {b}" for a, b in wrong)


def test_no_cycle_between_packages() -> None:
    # Implied by the two tests above; this one names the imports that make the cycle.
    edges = imports() - KNOWN
    found = cycle(package_graph(edges))
    why = ", ".join(f"{a} -> {b}" for a, b in sorted(edges) if crosses(a, b, found))
    assert not found, f"a cycle between packages: {' -> '.join(found)}: {why}"


def test_no_cycle_between_modules() -> None:
    # Inside a package too: two modules that need each other are one module, or want a third.
    graph: dict[str, set[str]] = {}
    for importer, target in imports() - KNOWN:
        if target != importer and not importer.startswith(target + "."):
            graph.setdefault(importer, set()).add(target)
    found = cycle(graph)
    assert not found, f"a cycle between modules: {' -> '.join(found)}"


def test_package_inits_load_nothing_else() -> None:
    wrong = []
    for init in sorted((ROOT / "streamdet").glob("*/__init__.py")):
        own = module_name(init)
        for target in sorted(set(imported(init))):
            if package(own) not in REEXPORTING or not target.startswith(own + "."):
                wrong.append(f"{own} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_known_imports_are_still_there() -> None:
    gone = sorted(KNOWN - imports())
    assert not gone, f"remove from KNOWN, these imports are gone: {gone}"


def modules_imported(source: str) -> Iterator[str]:
    """The modules ``source`` imports by absolute name (``from a import b``: ``a``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module or ""


def test_benchmarks_import_nothing_from_tests() -> None:
    wrong = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        names = modules_imported(path.read_text(encoding="utf-8"))
        wrong += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert not wrong, "\n".join(wrong)


def imports_of_other_test_modules(source: str) -> list[str]:
    """What ``source`` (a file under tests/) imports of tests/ besides tests/support/: test
    modules share helpers through tests/support/ only, never through each other (nor
    through conftest.py, which pytest loads on its own)."""
    return [
        name
        for name in modules_imported(source)
        if name.split(".")[0] == "tests" and not (name + ".").startswith("tests.support.")
    ]


def test_test_modules_import_no_other_test_module() -> None:
    wrong = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        names = imports_of_other_test_modules(path.read_text(encoding="utf-8"))
        wrong += [f"{path.relative_to(ROOT)}: {n}" for n in names]
    assert not wrong, "move what they share to tests/support/:\n" + "\n".join(wrong)


def test_the_test_module_check_sees_one_test_module_importing_another() -> None:
    source = "from tests.pipeline.test_run import Running\nimport tests.conftest\n"
    source += "from tests.support.pipeline import Running\nfrom tests.support import media\n"
    source += "from tests import support\n"
    wrong = imports_of_other_test_modules(source)
    assert wrong == ["tests.pipeline.test_run", "tests.conftest", "tests"]


def test_the_checks_see_a_cycle_and_a_forbidden_import() -> None:
    # the checks themselves, on a made-up pair of edges: alert -> inference -> alert
    edges = {("streamdet.alert.stage", "streamdet.inference.stage")}
    edges.add(("streamdet.inference.stage", "streamdet.alert.rules"))
    assert set(cycle(package_graph(edges))) == {"alert", "inference"}
    assert not allowed("streamdet.alert.stage", "streamdet.inference.stage")
    assert allowed("streamdet.inference.stage", "streamdet.capture.ring")
    assert not allowed("streamdet.inference.stage", "streamdet.capture.stage")


def test_what_importing_config_and_eval_dataset_loads() -> None:
    # The same, as Python sees it: the config loads no model (nor torch), and eval's clip
    # reader loads capture's frame conversion, not its threads.
    code = (
        "import sys, streamdet.config, streamdet.eval.dataset\n"
        "print(sorted(m for m in sys.modules if m.startswith(('streamdet.', 'torch'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    loaded = ast.literal_eval(out.stdout)
    assert not [m for m in loaded if m.startswith(("torch", "streamdet.models"))], loaded
    assert "streamdet.capture.stage" not in loaded, loaded
    assert "streamdet.capture.convert" in loaded and "streamdet.config.loader" in loaded
