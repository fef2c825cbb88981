"""The build spec (tfbuild.yaml + command-line overrides), validated by concern.

Owns: reading the file (`load`, through the one YAML reader `yaml_reader` that
compat.yaml is read with too), the BuildSpec model and its key names (`model`), typed
readers that make every error name key, origin, value and fix (`fields`), one module
per concern — `entry` (entry_script, script_params), `runtime` (TensorFlow, Python,
GPU, Keras, env, labels), `distribution` (backend, counts, Horovod), `packages`
(pip, conda, apt, upload extras), `registries` (image references, indexes, CAs) —
and the TensorFlow compatibility matrix (`compat`). A new spec key: a field on
BuildSpec, a reader in its concern module, one line in `load._validate`, docs/spec.md.
"""

from ..errors import CONFIG_NAME, SpecError
from .load import COMMAND_LINE, load_spec, parse_config_text, spec_from_mapping
from .model import BuildSpec

__all__ = [
    "COMMAND_LINE",
    "CONFIG_NAME",
    "BuildSpec",
    "SpecError",
    "load_spec",
    "parse_config_text",
    "spec_from_mapping",
]
