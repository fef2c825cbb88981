# Rendered by tfbuild 0.1.0; re-render with `tfbuild dockerfile`, do not edit.
# No `# syntax=` line on purpose: BuildKit would fetch a frontend image, which fails offline.
# --- OS: the offline Debian base, extra CA certificates
FROM tfbuild/debian:bookworm AS os
COPY tfbuild/ca/ /usr/local/share/ca-certificates/tfbuild/
RUN update-ca-certificates >/dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

# --- TensorFlow 2.21.0 (CPU) in /opt/tfbuild/venv, with bytecode, without C++ headers and tests
FROM os AS tensorflow
COPY tfbuild/pip/ /tmp/tfbuild-pip/
RUN python3 -m venv /opt/tfbuild/venv \
 && /opt/tfbuild/venv/bin/python -c 'import pathlib, sys, sysconfig; v = "%d.%d" % sys.version_info[:2]; pathlib.Path(sysconfig.get_path("purelib"), "tfbuild-layers.pth").write_text("".join(f"/opt/tfbuild/layers/{n}/lib/python{v}/site-packages\n" for n in ("mpi", "user", "conda")))' \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf /opt/tfbuild/venv/bin/pip install --no-cache-dir --no-compile tensorflow-cpu==2.21.0 'tensorboard~=2.21.0' \
 && PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf /opt/tfbuild/venv/bin/pip install --no-cache-dir --no-compile --no-deps 'tf-keras~=2.21.0' \
 && /opt/tfbuild/venv/bin/pip freeze --exclude-editable | grep -v ' @ ' > /opt/tfbuild/venv/tfbuild-constraints.txt \
 && rm -rf /opt/tfbuild/venv/lib/python3*/site-packages/tensorflow/include \
 && find /opt/tfbuild/venv -type d \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} + \
 && (/opt/tfbuild/venv/bin/python -m compileall -qq -j0 --invalidation-mode unchecked-hash /opt/tfbuild/venv || true)

# --- user pip packages into /opt/tfbuild/layers/user, constrained so they cannot replace TensorFlow (a stage: pip.conf holds credentials)
FROM tensorflow AS user-packages
COPY tfbuild/pip/ /tmp/tfbuild-pip/
RUN PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CONFIG_FILE=/tmp/tfbuild-pip/pip.conf /opt/tfbuild/venv/bin/pip install --no-cache-dir --no-compile --prefix /opt/tfbuild/layers/user -c /opt/tfbuild/venv/tfbuild-constraints.txt internal-lib==1.0 \
 && find /opt/tfbuild/layers/user -type d \( -name __pycache__ -o -name tests \) -prune -exec rm -rf {} + \
 && (/opt/tfbuild/venv/bin/python -m compileall -qq -j0 --invalidation-mode unchecked-hash /opt/tfbuild/layers/user || true)

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

# --- the image: the layers built with credentials copied in, then the agent, the source, and metadata
FROM os
COPY --from=tensorflow /opt/tfbuild/venv /opt/tfbuild/venv
COPY --from=user-packages /opt/tfbuild/layers/user /opt/tfbuild/layers/user
COPY --from=agent /opt/tfbuild/agent /opt/tfbuild/agent
WORKDIR /app
COPY src/ /app/
COPY tfbuild/job.json /etc/tfbuild/job.json
ENV PATH="/opt/tfbuild/venv/bin:/opt/tfbuild/layers/user/bin:/opt/tfbuild/layers/mpi/bin:/opt/tfbuild/layers/conda/bin:/opt/tfbuild/agent/cmd:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PYTHONUNBUFFERED="1" \
    TF_USE_LEGACY_KERAS="1"
ENTRYPOINT ["/opt/tfbuild/agent/cmd/tfbuild-agent", "run", "--"]
CMD []
LABEL org.opencontainers.image.title="proj" \
      io.tfbuild.version="0.1.0" \
      io.tfbuild.source-digest="sha256:5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d" \
      io.tfbuild.spec="{\"apt_packages\":[],\"ca_certs\":[\"corp-ca.pem\"],\"conda_channels\":[],\"conda_dependencies_file\":null,\"conda_packages\":[],\"custom_docker_base_image\":null,\"distributed_backend\":\"none\",\"entry_script\":\"train.py\",\"environment_variables\":{},\"export_onnx\":null,\"horovod\":false,\"keras\":\"legacy\",\"labels\":{},\"max_run_duration_seconds\":null,\"node_count\":1,\"parameter_server_count\":0,\"pip_constraints\":[],\"pip_extra_index_urls\":[\"https://mirror.example.com/simple\"],\"pip_index_url\":\"https://***@pypi.example.com/simple\",\"pip_packages\":[\"internal-lib==1.0\"],\"pip_requirements\":[],\"pip_requirements_file\":null,\"process_count_per_node\":1,\"python_version\":\"3.11\",\"script_params\":[],\"shm_size\":null,\"source_directory\":\"proj\",\"tag\":null,\"tensorflow_version\":\"2.21.0\",\"trust_host_ca\":false,\"upload_extras\":[],\"use_gpu\":false,\"worker_count\":1}"
