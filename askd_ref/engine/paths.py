"""Telling local model paths from hub ids, and reporting missing local paths at once.

Torch-free, so that ``askd distill`` validates its run file before any heavy import.
"""

import difflib
import os
import re

__all__ = ["check_model_path", "last_checkpoint", "looks_like_hub_id", "resolve_model_path"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the form ``org/name`` of a hub id and no local directory claims it.

    >>> looks_like_hub_id("Qwen/Qwen2.5-0.5B"), looks_like_hub_id("./student"), looks_like_hub_id("a/b/c")
    (True, False, False)
    """
    return bool(_HUB_ID.match(name)) and not os.path.isdir(name.split("/")[0])


def _hub_cached(name: str) -> bool:
    """Whether the local hub cache holds ``name`` (a legacy id without an org, e.g. ``gpt2``)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        return False
    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def check_model_path(name_or_path: str, *, what: str = "model") -> str:
    """Return ``name_or_path`` if it is a model directory or a hub id; raise naming it otherwise.

    A hub id has the form ``org/name`` (or is a bare legacy id already in the hub cache);
    anything else is a local path, and a local path that is not a directory is reported at
    once — with the closest sibling directory names — instead of being sent to the hub.

    >>> check_model_path("Qwen/Qwen2.5-0.5B")
    'Qwen/Qwen2.5-0.5B'
    >>> check_model_path("./no-such-model")
    Traceback (most recent call last):
    ...
    FileNotFoundError: model directory './no-such-model' does not exist
    """
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"{what} must be a local directory or a hub id, got {name_or_path!r}")
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        return name_or_path
    if os.path.exists(path):
        raise ValueError(f"{what} {name_or_path!r} is a file; expected a model directory or a hub id")
    if looks_like_hub_id(name_or_path) or ("/" not in name_or_path and _hub_cached(name_or_path)):
        return name_or_path
    parent, base = os.path.split(path.rstrip("/") or path)
    try:
        siblings = [d for d in os.listdir(parent or ".") if os.path.isdir(os.path.join(parent or ".", d))]
    except OSError:
        siblings = []
    close = difflib.get_close_matches(base, siblings, n=1, cutoff=0.6)
    hint = f"; did you mean {os.path.join(parent, close[0])!r}?" if close else ""
    raise FileNotFoundError(f"{what} directory {name_or_path!r} does not exist{hint}")


def resolve_model_path(name_or_path: str, base: str) -> str:
    """A run file's model entry: relative local paths are taken relative to ``base`` (its folder).

    Hub ids (``org/name``, or a bare legacy id in the hub cache) are kept as they are, unless
    ``base`` holds a directory of that name.

    >>> resolve_model_path("Qwen/Qwen2.5-0.5B", "/runs"), resolve_model_path("./student", "/runs")
    ('Qwen/Qwen2.5-0.5B', '/runs/student')
    """
    path = os.path.expanduser(name_or_path)
    if os.path.isabs(path):
        return path
    local = os.path.normpath(os.path.join(base, path))
    if os.path.isdir(local):
        return local
    if os.path.isdir(os.path.join(base, path.split("/")[0])):
        return local  # its first folder is next to the run file
    if looks_like_hub_id(name_or_path) or ("/" not in name_or_path and _hub_cached(name_or_path)):
        return name_or_path
    return local


def last_checkpoint(output_dir: str) -> str | None:
    """The complete ``checkpoint-N`` folder with the largest N in ``output_dir`` (``None`` if none).

    Complete means it holds ``trainer_state.json`` (written last by ``Trainer``); the
    ``tmp-checkpoint-N`` folders of an interrupted save never count.
    """
    if not os.path.isdir(output_dir):
        return None
    best: tuple[int, str] | None = None
    for name in os.listdir(output_dir):
        m = re.fullmatch(r"checkpoint-(\d+)", name)
        path = os.path.join(output_dir, name)
        complete = m is not None and os.path.isfile(os.path.join(path, "trainer_state.json"))
        if m and complete and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), path)
    return None if best is None else best[1]
