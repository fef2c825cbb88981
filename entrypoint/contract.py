"""Values both halves of tfbuild agree on: the builder bakes them into images and
`tfbuild run` passes them to containers; the agent reads them back. Each is defined
here once and imported everywhere else (the agent package is what ships in images,
so the builder imports from it, never the other way round)."""

from __future__ import annotations

BACKENDS = ("none", "mpi", "ps", "multiworker")
"""`distributed_backend` values. `none` runs one process; `mpi` runs mpirun (Horovod,
mpi4py); `ps` and `multiworker` export TF_CONFIG for TensorFlow's own strategies."""

TF_CONFIG_BACKENDS = ("ps", "multiworker")
"""Backends whose tasks receive a TF_CONFIG cluster."""

UPLOAD_EXTRAS = ("s3", "azure", "gcs")
"""fsspec backends an image can carry for uploads (pip extras of tfbuild)."""

DEFAULT_TF_PORT = 2222
"""TensorFlow's gRPC port per task (what Kubeflow's TFJob uses)."""

DEFAULT_CONTROL_PORT = 29400
"""The agents' rendezvous/control channel; the MPI launch channel is this + 1."""

MPI_LAUNCH_PORT_OFFSET = 1

DEFAULT_GRACE_SECONDS = 30.0
"""Between the SIGTERM forwarded to a task and its kill."""

DEFAULT_FLUSH_TIMEOUT_SECONDS = 60.0
"""Bound on the final upload flush after the tasks end."""

INPUT_MODES = ("download", "mount")
"""How a data input reaches the script: `download` copies it into the node-local cache
first; `mount` reads it in place where the store allows (file://), else downloads."""

INPUT_PLACEHOLDER = "${{tfbuild.input.{name}}}"
"""What a `{download: URI}` script param is baked as; the agent puts the local path there."""

INPUTS_DIR = "inputs"
"""Inputs appear under the working directory at inputs/<name> (/app/inputs/<name>)."""

TIME_LIMIT_EXIT_CODE = 124
"""The agent's exit code when max_run_duration_seconds stopped the job (as timeout(1))."""

TIME_LIMIT_REASON = "time limit"
"""How a run record's reason starts when max_run_duration_seconds stopped the job."""

ONNX_EXPORT_TIMEOUT_SECONDS = 900.0
"""Bound on export_onnx's conversion and check after the script succeeded."""

TIME_LIMIT_SKEW_SECONDS = 10.0
"""A node whose limit is this close when another node reports a task canceled takes it
as the same time limit (the nodes' clocks started within the rendezvous of each other)."""
