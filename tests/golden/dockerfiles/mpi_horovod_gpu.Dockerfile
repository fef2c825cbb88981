# Rendered by tfbuild 0.1.0; re-render with `tfbuild dockerfile`, do not edit.
# No `# syntax=` line on purpose: BuildKit would fetch a frontend image, which fails offline.
# --- OS: the offline Debian base, Open MPI runtime
FROM tfbuild/debian:bookworm AS os
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openmpi-bin \
 && rm -rf /var/lib/apt/lists/*

# --- TensorFlow 2.21.0 (GPU: CUDA libraries from pip wheels) in /opt/tfbuild/venv, with bytecode, without C++ headers and tests
FROM os AS tensorflow
RUN python3 -m venv /opt/tfbuild/venv \
 && /opt/tfbuild/venv/bin/python -c 'import pathlib, sys, sysconfig; v = "%d.%d" % sys.version_info[:2]; pathlib.Path(sysconfig.get_path("purelib"), "tfbuild-layers.pth").write_text("".join(f"/opt/tfbuild/layers/{n}/lib/python{v}/site-packages\n" for n in ("mpi", "user", "conda")))' \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip install --no-cache-dir --no-compile 'tensorflow[and-cuda]==2.21.0' 'tensorboard~=2.21.0' 'tf-keras~=2.21.0' \
 && /opt/tfbuild/venv/bin/pip freeze --exclude-editable | grep -v ' @ ' > /opt/tfbuild/venv/tfbuild-constraints.txt \
 && rm -rf /opt/tfbuild/venv/lib/python3*/site-packages/tensorflow/include \
 && find /opt/tfbuild/venv -type d \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} + \
 && (/opt/tfbuild/venv/bin/python -m compileall -qq -j0 --invalidation-mode unchecked-hash /opt/tfbuild/venv || true)

# --- MPI: mpi4py + Horovod 0.28.1 (MPI + Gloo + NCCL), built after TensorFlow into /opt/tfbuild/layers/mpi
FROM tensorflow AS mpi
# nvcc and NCCL for Horovod's GPU operations come from NVIDIA's CUDA repository; they stay in this stage.
RUN python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "/tmp/cuda-keyring.deb")' https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libopenmpi-dev python3-dev g++ cmake make patch cuda-nvcc-12-5 cuda-cudart-dev-12-5 libnccl-dev libnccl2 \
 && rm -rf /var/lib/apt/lists/*
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip install --no-cache-dir --prefix /opt/tfbuild/layers/mpi -c /opt/tfbuild/venv/tfbuild-constraints.txt mpi4py==4.1.2
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip download --no-cache-dir --no-deps --only-binary :all: -d /tmp/tf-wheel tensorflow==2.21.0 \
 && /opt/tfbuild/venv/bin/python -c 'import glob, sysconfig, zipfile; z = zipfile.ZipFile(glob.glob("/tmp/tf-wheel/*.whl")[0]); z.extractall(sysconfig.get_path("purelib"), [n for n in z.namelist() if n.startswith("tensorflow/include/")])' \
 && rm -rf /tmp/tf-wheel
# Horovod 0.28.1 does not build against TensorFlow 2.21.0 as released: its sdist is
# patched first (base-images/patches/horovod/0.28.1/, each patch says what it fixes).
COPY tfbuild/patches/horovod/ /tmp/tfbuild-horovod-patches/
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip install --no-cache-dir -c /opt/tfbuild/venv/tfbuild-constraints.txt setuptools wheel packaging \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip download --no-cache-dir --no-deps --no-binary :all: -d /tmp/horovod-sdist horovod==0.28.1 \
 && tar -xzf /tmp/horovod-sdist/horovod-0.28.1.tar.gz -C /tmp/horovod-sdist \
 && patch -p1 --forward -d /tmp/horovod-sdist/horovod-0.28.1 -i /tmp/tfbuild-horovod-patches/0001-xla-ops-only-before-tf-2.19.patch \
 && HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_CUDA_HOME=/usr/local/cuda-12.5 HOROVOD_NCCL_LINK=STATIC MAKEFLAGS=-j2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/tfbuild/venv/bin/pip install --no-cache-dir --no-build-isolation --prefix /opt/tfbuild/layers/mpi -c /opt/tfbuild/venv/tfbuild-constraints.txt /tmp/horovod-sdist/horovod-0.28.1 \
 && rm -rf /tmp/horovod-sdist /tmp/tfbuild-horovod-patches
# A step of its own, so a failing check keeps the compiled layer in the cache: Horovod
# must have TensorFlow, MPI, Gloo and NCCL, and allreduce across 2 local ranks (on CPU: no GPU while building).
RUN export PATH=/opt/tfbuild/layers/mpi/bin:$PATH TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES= \
 && horovodrun --check-build > /tmp/horovod-check.txt && cat /tmp/horovod-check.txt \
 && grep -q '\[X\] TensorFlow' /tmp/horovod-check.txt \
 && grep -q '\[X\] MPI' /tmp/horovod-check.txt \
 && grep -q '\[X\] Gloo' /tmp/horovod-check.txt \
 && grep -q '\[X\] NCCL' /tmp/horovod-check.txt \
 && mpirun --allow-run-as-root --oversubscribe -np 2 -bind-to none --mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none \
    /opt/tfbuild/venv/bin/python -c 'import horovod, horovod.tensorflow as hvd, tensorflow as tf; hvd.init(); s = float(hvd.allreduce(tf.constant(hvd.rank() + 1.0), op=hvd.Sum)); print("horovod", horovod.__version__, "rank", hvd.rank(), "of", hvd.size(), "allreduce", s); assert (hvd.size(), s) == (2, 3.0), s' \
 && rm /tmp/horovod-check.txt
RUN /opt/tfbuild/venv/bin/python -c 'from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])' \
 && /opt/tfbuild/venv/bin/pip freeze --exclude-editable | grep -v ' @ ' > /opt/tfbuild/layers/mpi/tfbuild-constraints.txt \
 && find /opt/tfbuild/layers/mpi -type d \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} + \
 && (/opt/tfbuild/venv/bin/python -m compileall -qq -j0 --invalidation-mode unchecked-hash /opt/tfbuild/layers/mpi || true)

# --- the tfbuild agent in its own venv, so its dependencies never meet the user's
FROM os AS agent
COPY tfbuild/agent/ /tmp/tfbuild-agent/
# its requirements come in the context from the builder's own environment (pure Python): no pip here
RUN python3 -m venv --without-pip /opt/tfbuild/agent \
 && site="$(/opt/tfbuild/agent/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && cp -r /tmp/tfbuild-agent/site/. /tmp/tfbuild-agent/tfbuild_agent "$site/" \
 && mkdir -p /opt/tfbuild/agent/cmd \
 && printf '#!/opt/tfbuild/agent/bin/python\nfrom tfbuild_agent.cli import main\nraise SystemExit(main())\n' > /opt/tfbuild/agent/cmd/tfbuild-agent \
 && chmod 755 /opt/tfbuild/agent/cmd/tfbuild-agent \
 && find /opt/tfbuild/agent -type d \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} + \
 && (/opt/tfbuild/agent/bin/python -m compileall -qq -j0 --invalidation-mode unchecked-hash /opt/tfbuild/agent || true)

# --- the image: TensorFlow's layer extended in place, then the agent, the source, and metadata
FROM tensorflow
COPY --from=mpi /opt/tfbuild/layers/mpi /opt/tfbuild/layers/mpi
COPY --from=agent /opt/tfbuild/agent /opt/tfbuild/agent
WORKDIR /app
COPY src/ /app/
COPY tfbuild/job.json /etc/tfbuild/job.json
ENV PATH="/opt/tfbuild/venv/bin:/opt/tfbuild/layers/user/bin:/opt/tfbuild/layers/mpi/bin:/opt/tfbuild/layers/conda/bin:/opt/tfbuild/agent/cmd:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PYTHONUNBUFFERED="1" \
    TF_USE_LEGACY_KERAS="1" \
    OMPI_ALLOW_RUN_AS_ROOT="1" \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1" \
    NVIDIA_VISIBLE_DEVICES="all" \
    NVIDIA_DRIVER_CAPABILITIES="compute,utility"
ENTRYPOINT ["/opt/tfbuild/agent/cmd/tfbuild-agent", "run", "--"]
CMD []
LABEL org.opencontainers.image.title="proj" \
      io.tfbuild.version="0.1.0" \
      io.tfbuild.source-digest="sha256:5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d" \
      io.tfbuild.spec="{\"apt_packages\":[],\"ca_certs\":[],\"conda_channels\":[],\"conda_dependencies_file\":null,\"conda_packages\":[],\"custom_docker_base_image\":null,\"distributed_backend\":\"mpi\",\"entry_script\":\"train.py\",\"environment_variables\":{},\"export_onnx\":null,\"horovod\":true,\"keras\":\"legacy\",\"labels\":{},\"max_run_duration_seconds\":null,\"node_count\":2,\"parameter_server_count\":0,\"pip_constraints\":[],\"pip_extra_index_urls\":[],\"pip_index_url\":null,\"pip_packages\":[],\"pip_requirements\":[],\"pip_requirements_file\":null,\"process_count_per_node\":1,\"python_version\":\"3.11\",\"script_params\":[],\"shm_size\":null,\"source_directory\":\"proj\",\"tag\":null,\"tensorflow_version\":\"2.21.0\",\"trust_host_ca\":false,\"upload_extras\":[],\"use_gpu\":true,\"worker_count\":1}"
