"""Nothing travels back up: each module imports only modules of its own layer or below, and the
edges reach the engine and the sinks only through the service."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dreamsampler"

# lower number = lower layer; a module may import its own layer or lower ones
LAYERS: dict[str, int] = {
    "schema": 0, "engine": 0,
    "server.contract": 1, "server.clock": 1, "server.presets": 1, "server.midi_map": 1,
    "server.midi_in": 1, "server.notify": 1, "server.audio_devices": 1, "server.mixer": 1,
    "server.delivery": 1, "server.messages": 2,
    "server.sinks": 2, "server.folder_sink": 3, "server.device_sink": 3,
    "server.fanout": 3, "server.standard_sinks": 3, "server.job_runner": 3,
    "server.preset_book": 3, "server.session": 3, "server.transport": 3, "server.playback": 3,
    "server.job_builder": 3,
    "server.service": 4,
    "server.midi_edge": 5, "server.jam": 5,
    "server.osc": 6, "server.oscquery": 6,
    "server.app": 7,
}
EDGES = ("server/osc.py", "server/midi_edge.py", "server/jam.py")


def _layer(module: str) -> int | None:
    name = module.removeprefix("dreamsampler.")
    for prefix, layer in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "dreamsampler"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dreamsampler"))
    return found


def test_no_module_imports_one_above_it() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _layer(module)
        if own is None:
            continue
        for imported in _imports(path):
            layer = _layer(imported)
            if layer is not None and layer > own:
                wrong.append(f"{module} (layer {own}) imports {imported} (layer {layer})")
    assert not wrong, "\n".join(wrong)


def test_the_service_knows_sinks_only_through_the_interface() -> None:
    """Concrete sinks are built in server/standard_sinks.py; the service and the fan-out name
    none of them (a new sink is a module, not an edit of the service)."""
    for rel in ("server/service.py", "server/job_runner.py", "server/fanout.py"):
        source = (PACKAGE / rel).read_text()
        imports = _imports(PACKAGE / rel)
        assert not {i for i in imports if i.startswith((
            "dreamsampler.server.folder_sink", "dreamsampler.server.device_sink"))}, rel
        for name in ("FolderSink", "DeviceSink", "DeviceError"):
            assert name not in source, f"{rel} names the concrete sink class {name}"


def test_edges_reach_engine_and_sinks_only_through_the_service() -> None:
    for rel in EDGES:
        source = (PACKAGE / rel).read_text()
        imports = _imports(PACKAGE / rel)
        assert not {i for i in imports if i.startswith((
            "dreamsampler.server.folder_sink", "dreamsampler.server.device_sink",
            "dreamsampler.server.mixer", "dreamsampler.engine.sampler",
            "dreamsampler.engine.jobs.LocalEngine"))}, rel
        for part in ("engine", "sinks", "device", "folder", "clock", "presets", "session",
                     "params", "transport", "playback", "builder"):
            reach = re.search(rf"service\.{part}\b", source)
            assert reach is None, f"{rel} reaches past the service: {reach and reach[0]}"
        # PortAudio is the device part's business (server/playback.py), never an edge's
        assert "dreamsampler.server.audio_devices" not in imports, rel
        assert "sounddevice" not in source, rel


def test_the_schema_imports_nothing_of_the_package() -> None:
    """Every layer reads dreamsampler/schema.py, so it must sit below all of them."""
    assert _imports(PACKAGE / "schema.py") == set()


def _import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports anywhere in its body (at module level or inside
    a function: a deferred import still ties the two together), ``TYPE_CHECKING`` blocks
    excepted. ``from a.b import c`` counts as importing ``a.b.c`` when that is a module."""
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
               .removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        todo: list[ast.AST] = [ast.parse(path.read_text())]
        while todo:
            for node in ast.iter_child_nodes(todo.pop()):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    todo.extend(node.orelse)
                    continue
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        found.add(full if full in modules else node.module)
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                todo.append(node)
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """Depth-first search for a back edge over every import of every module."""
    graph = _import_graph()
    assert graph.get("dreamsampler.engine.families")
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_light_catalog_matches_the_registry_and_the_tiny_builds() -> None:
    """engine/catalog.py (read by --help, the contract and the first-run check without torch)
    names exactly the registry's families and the tiny builds that load."""
    from dreamsampler.engine import catalog
    from dreamsampler.engine.families import FAMILIES, load_model
    from dreamsampler.server.contract import REPLIES

    assert {p: cls.name for p, cls in FAMILIES.items()} == catalog.PIPELINE_FAMILIES
    assert {cls.name for cls in FAMILIES.values()
            if cls.supports_inpainting} == catalog.INPAINTING_FAMILIES
    for name, family in catalog.TINY_NAMES.items():
        assert load_model(name, "cpu").name == family
    family_arg = next(a for a in REPLIES["/version.reply"].args if a.name == "family")
    assert all(name in family_arg.description for name in catalog.FAMILY_NAMES)
