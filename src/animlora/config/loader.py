"""Layered loading, merging and validation of settings, with where each value came from."""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from animlora.config.schema import CharacterSpec, Settings
from animlora.errors import ConfigError

PROJECT_FILE = "project.yaml"
CHARACTERS_DIR = "characters"
log = logging.getLogger("animlora.config")
_WARNED: set[str] = set()


@dataclass(frozen=True)
class Layer:
    """One source of settings: its label (shown by ``config show``) and its tree."""

    source: str
    data: dict[str, Any]


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    layers: tuple[Layer, ...]
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> layer label

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "?")


def _yaml(text: str) -> Any:
    """yaml.safe_load, on libyaml's C parser when PyYAML has it (5-10x faster, same result)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; an unreadable or malformed file is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    try:
        data = _yaml(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def parse_set_options(options: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["extract.mode=all", "runner.workers=4"]`` -> nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {option!r}: expected section.key=value, e.g. extract.mode=all")
        try:
            value = _yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {option!r}: {part} is set twice, once as a value")
        node[parts[-1]] = value
    return tree


def preset_names() -> list[str]:
    """The training presets shipped in ``config/presets/``."""
    folder = resources.files("animlora.config").joinpath("presets")
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def preset_file(name: str) -> Path:
    """The YAML file of preset ``name``; an unknown name lists the presets."""
    entry = resources.files("animlora.config").joinpath("presets", f"{name}.yaml")
    if not name or not entry.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return Path(str(entry))


def _preset_layer(name: str) -> Layer:
    path = preset_file(name)
    layer = _earlier_names(Layer(str(path), read_yaml(path)))
    _check_keys(layer.data, Settings, layer.source)
    return layer


def _earlier_names(layer: Layer) -> Layer:
    """A setting written under the name it had before a rename (``train.bucket_min``, now
    ``train.min_bucket``: a section's ``earlier_names``) reads as its new name, with a
    deprecation warning naming the file; both names in one file are an error."""
    data = dict(layer.data)
    for section, value in layer.data.items():
        field_info = Settings.model_fields.get(section)
        model = _model_of(field_info.annotation) if field_info is not None else None
        renamed: dict[str, str] = getattr(model, "earlier_names", {})
        if not renamed or not isinstance(value, dict) or not any(old in value for old in renamed.values()):
            continue
        fixed = dict(value)
        for name, old in renamed.items():
            if old not in fixed:
                continue
            if name in fixed:
                raise ConfigError(f"{layer.source}: {section}.{old} and {section}.{name} are both set; "
                                  f"{old} is the earlier name of {name}: keep only {section}.{name}")
            fixed[name] = fixed.pop(old)
            warning = (f"{layer.source}: {section}.{old} is deprecated, read as {section}.{name} "
                       f"(rename it; the earlier name will stop working in a later release)")
            if warning not in _WARNED:
                _WARNED.add(warning)
                log.warning(warning)
        data[section] = fixed
    return Layer(layer.source, data)


def _package_layers(profile: str) -> list[Layer]:
    root = resources.files("animlora.config")
    defaults: dict[str, Any] = {}
    for entry in sorted(root.joinpath("defaults").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = _yaml(entry.read_text(encoding="utf-8")) or {}
            defaults[entry.name.removesuffix(".yaml")] = data
    profile_file = root.joinpath("profiles", f"{profile}.yaml")
    if not profile_file.is_file():
        raise ConfigError(f"profile {profile!r} does not exist; allowed: 3d, 2d")
    profile_data = _yaml(profile_file.read_text(encoding="utf-8")) or {}
    return [Layer("package default", defaults), Layer(f"profile {profile}", profile_data)]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        out[key] = _deep_merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return out


def _has_interpolation(data: Any) -> bool:
    if isinstance(data, dict):
        return any(_has_interpolation(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_interpolation(v) for v in data)
    return isinstance(data, str) and "${" in data


def _merge(layers: list[Layer]) -> dict[str, Any]:
    """OmegaConf merge of every layer, interpolations (``${project.name}``) resolved.
    Layers without an interpolation are merged as plain mappings (the same result:
    mappings merge key by key, anything else is replaced), which spares every command
    OmegaConf's import and merge (~85 ms of a CLI call; tests/test_config.py compares both)."""
    if not any(_has_interpolation(layer.data) for layer in layers):
        tree: dict[str, Any] = {}
        for layer in layers:
            tree = _deep_merge(tree, layer.data)
        return tree
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(*(OmegaConf.create(layer.data) for layer in layers))
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"settings cannot be merged: {exc}".splitlines()[0]) from exc


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _check_keys(data: dict[str, Any], model: type[BaseModel], source: str, prefix: str = "") -> None:
    """Reject keys the schema does not know, naming the key, the file and the allowed keys."""
    fields = model.model_fields
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            allowed = sorted(fields)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            where = prefix.rstrip(".") or "the top level"
            raise ConfigError(
                f"{source}: unknown key '{dotted}'{hint}; allowed in {where}: {', '.join(allowed)}"
            )
        sub = _model_of(fields[key].annotation)
        if sub is not None and get_origin(fields[key].annotation) not in (dict, list):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping of settings, got {value!r}")
            _check_keys(value, sub, source, f"{dotted}.")


def flatten_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_keys(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _allowed_values(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    node: Any = model
    for part in loc:
        if not (isinstance(node, type) and issubclass(node, BaseModel)) or part not in node.model_fields:
            return ""
        annotation = node.model_fields[part].annotation
        node = _model_of(annotation) or annotation
    literal_args = get_args(node)
    if literal_args and all(isinstance(a, str | int | float) for a in literal_args):
        return "allowed: " + ", ".join(str(a) for a in literal_args)
    return ""


def validate_tree(tree: dict[str, Any], sources: dict[str, str], model: type[BaseModel] = Settings) -> Any:
    """Validate a merged tree; the first error names key, source file and allowed values."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not isinstance(p, int))
        dotted = ".".join(str(p) for p in loc)
        if err["type"] == "missing":
            raise ConfigError(f"setting '{dotted}' is missing (it has no default)") from exc
        source = sources.get(dotted) or next(
            (src for key, src in sources.items() if key.startswith(dotted + ".")), "?"
        )
        value = err.get("input")
        allowed = _allowed_values(model, loc)
        message = allowed or err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        raise ConfigError(f"{source}: {dotted} = {value!r} is not valid: {message}") from exc


def load_character(path: Path) -> CharacterSpec:
    """Read ``characters/<file>.yaml``; the name (default: the file name) is checked here,
    where it enters, since it becomes a folder and file names downstream."""
    from animlora.io.files import character_name_problem

    data = read_yaml(path)
    data.setdefault("name", path.stem)
    _check_keys(data, CharacterSpec, str(path))
    spec = validate_tree(data, {key: str(path) for key in flatten_keys(data)}, CharacterSpec)
    problem = character_name_problem(spec.name)
    if problem:
        where = "name" if "name" in read_yaml(path) else "name (from the file name)"
        raise ConfigError(f"{path}: {where}: {problem}")
    return spec


def find_character(folder: Path, name: str) -> CharacterSpec | None:
    """The spec in ``folder`` whose ``name`` is ``name``: ``<name>.yaml`` first, else any
    file that says ``name: <name>`` (a file may be named otherwise than its character)."""
    first = folder / f"{name}.yaml"
    if first.is_file():
        spec = load_character(first)
        if spec.name == name:
            return spec
    if folder.is_dir():
        for path in sorted(folder.glob("*.yaml")):
            if path != first:
                spec = load_character(path)
                if spec.name == name:
                    return spec
    return None


def load_settings(
    project_dir: Path | None = None,
    *,
    profile: str | None = None,
    character: str | None = None,
    config_files: list[Path] | tuple[Path, ...] = (),
    overrides: dict[str, Any] | None = None,
    preset: str | None = None,
) -> LoadedSettings:
    """Merge every layer and validate.

    Layers, later wins: package defaults → profile → training preset → ``project.yaml`` →
    ``config_files`` → character → ``overrides``. ``project_dir`` adds ``project.yaml`` (and,
    with ``character``, that character's ``settings:`` block); ``config_files`` are extra YAML
    files (standalone commands' ``--config``); ``overrides`` is the ``--set`` tree. The preset
    is ``preset`` (a command's ``--preset``) or else the last ``train.preset`` a user layer
    sets; it sits under the user's files, so a project's ``train.epochs`` survives it.
    """
    user_layers: list[Layer] = []
    if project_dir is not None:
        path = Path(project_dir) / PROJECT_FILE
        user_layers.append(Layer(str(path), read_yaml(path)))
    for cfg in config_files:
        user_layers.append(Layer(str(cfg), read_yaml(Path(cfg))))
    if character is not None:
        if project_dir is None:
            raise ConfigError(f"character {character!r} given without a project")
        from animlora.io.files import character_name_problem

        problem = character_name_problem(character)
        if problem:
            raise ConfigError(f"--character: {problem}")
        cpath = Path(project_dir) / CHARACTERS_DIR / f"{character}.yaml"
        spec = load_character(cpath)
        user_layers.append(Layer(f"{cpath} (settings)", spec.settings))
    if overrides:
        user_layers.append(Layer("--set", overrides))

    user_layers = [_earlier_names(layer) for layer in user_layers]
    for layer in user_layers:
        _check_keys(layer.data, Settings, layer.source)

    chosen = profile
    if chosen is None:
        for layer in user_layers:
            chosen = layer.data.get("project", {}).get("profile", chosen)
    chosen_preset = preset
    if chosen_preset is None:
        for layer in user_layers:
            train = layer.data.get("train")
            if isinstance(train, dict) and train.get("preset"):
                chosen_preset = str(train["preset"])
    preset_layers = [_preset_layer(chosen_preset)] if chosen_preset else []
    layers = _package_layers(chosen or "3d") + preset_layers + user_layers
    if profile is not None:
        layers.append(Layer("--profile", {"project": {"profile": profile}}))
    if preset is not None:
        layers.append(Layer("--preset", {"train": {"preset": preset}}))

    tree = _merge(layers)
    sources: dict[str, str] = {}
    for layer in layers:
        for key in flatten_keys(layer.data):
            sources[key] = layer.source
    settings = validate_tree(tree, sources)
    return LoadedSettings(settings=settings, layers=tuple(layers), sources=sources)
