"""Config section `compare`: which methods, how many seeds, where the outputs go."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from .methods import METHODS


@dataclasses.dataclass
class CompareConfig:
    """Section `compare` (`--methods a,b` and `--seeds N` override the first two).

    seeds: seed i runs with run.seed, data.seed and eval.seed each + i (another data split, initialisation
           and sampling; the toy world itself stays `toy.seed`'s).
    keep_models: False deletes each method's model and checkpoints once it is evaluated (results stay).
    """

    methods: list[str] = dataclasses.field(default_factory=lambda: list(METHODS))
    seeds: int = 5
    output_dir: str | None = None  # default <run dir>/compare
    keep_models: bool = False

    def __post_init__(self):
        if not self.methods:
            raise ConfigError("methods: name at least one method")
        for i, name in enumerate(self.methods):
            if name not in METHODS:
                raise ConfigError(f"methods[{i}]: unknown method {name!r}; known: {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods: listed twice: {self.methods}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds: must be an integer >= 1 (got {self.seeds!r})")
