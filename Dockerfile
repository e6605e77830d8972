# letsgo-worker's container images, one target each (see docs/aws.md and docs/containers.md):
#
#   docker build -t letsgo-worker .                                   the AWS Lambda image (the default, last
#                                                                     stage; `sam build` builds it for template.yaml)
#   docker build --target server -t letsgo-worker-server .            `letsgo-worker serve --sqs` for ECS or
#                                                                     Kubernetes, with a HEALTHCHECK on /livez

# Plugins to bake into the images (both targets), from any mix of three sources (docs/deploy-plugins.md):
#   PLUGINS           pip requirements: paths in this build context, or names (with versions) found in
#                     PLUGIN_WHEELS or on PLUGIN_INDEX_URL, e.g. "plugins/letsgo_slack acme-billing==1.2.0"
#   PLUGIN_WHEELS     a folder of wheels in the build context: every *.whl directly in it is installed,
#                     and the names in PLUGINS are looked up there too (default: plugin-wheels/)
#   PLUGIN_INDEX_URL  a package index searched besides PyPI for the names in PLUGINS (a private index);
#                     empty: none. A build argument is kept in the image's history: no credentials here.
# template.yaml passes them (the function's Metadata: DockerBuildArgs); by hand: docker build --build-arg.
ARG PLUGINS="plugins/letsgo_stripe plugins/letsgo_slack plugins/example_orders"
ARG PLUGIN_WHEELS="plugin-wheels"
ARG PLUGIN_INDEX_URL=""

# -- server: a long-running worker polling SQS (ECS service, Kubernetes Deployment) ---------------
FROM python:3.11-slim AS server
ARG PLUGINS
ARG PLUGIN_WHEELS
ARG PLUGIN_INDEX_URL
COPY pyproject.toml README.md LICENSE constraints.txt lambda_entry.py server.py /tmp/build/
COPY host /tmp/build/host
COPY plugins /tmp/build/plugins
COPY ${PLUGIN_WHEELS} /tmp/build/plugin-wheels/
RUN cd /tmp/build \
    && wheels="$(find plugin-wheels -maxdepth 1 -name '*.whl' | sort)" \
    && pip install --no-cache-dir --disable-pip-version-check -c constraints.txt --find-links plugin-wheels \
        ${PLUGIN_INDEX_URL:+--extra-index-url "$PLUGIN_INDEX_URL"} ".[aws]" ${PLUGINS} ${wheels} \
    && rm -rf /tmp/build \
    && letsgo-worker plugins --freeze \
    && useradd --system --no-create-home worker
USER worker
# Every interface: the orchestrator's probes reach the container from outside it. Under --sqs
# POST / takes nothing; only /livez, /readyz, /healthz and plugin routes are served.
ENV LETSGO_WORKER_HOST=0.0.0.0 PORT=3002 PYTHONUNBUFFERED=1
EXPOSE 3002
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3002') + '/livez', timeout=4)"]
# The queue to read is LETSGO_WORKER_QUEUE_URL (also where ctx.enqueue sends). exec: the worker is
# PID 1 and gets the orchestrator's SIGTERM itself, then drains for LETSGO_WORKER_DRAIN_SECONDS.
CMD ["sh", "-c", "exec letsgo-worker serve --sqs \"${LETSGO_WORKER_QUEUE_URL:?set LETSGO_WORKER_QUEUE_URL to the SQS queue URL}\""]

# -- lambda: the AWS Lambda container image (the default target) ----------------------------------
FROM public.ecr.aws/lambda/python:3.11 AS lambda
ARG PLUGINS
ARG PLUGIN_WHEELS
ARG PLUGIN_INDEX_URL

# Install the host and the plugins as regular (non-editable) distributions into the
# image's site-packages, at the versions pinned in constraints.txt, then drop the sources.
COPY pyproject.toml README.md LICENSE constraints.txt lambda_entry.py server.py /tmp/build/
COPY host /tmp/build/host
COPY plugins /tmp/build/plugins
COPY ${PLUGIN_WHEELS} /tmp/build/plugin-wheels/
RUN cd /tmp/build \
    && wheels="$(find plugin-wheels -maxdepth 1 -name '*.whl' | sort)" \
    && pip install --no-cache-dir --disable-pip-version-check -c constraints.txt --find-links plugin-wheels \
        ${PLUGIN_INDEX_URL:+--extra-index-url "$PLUGIN_INDEX_URL"} ".[aws]" ${PLUGINS} ${wheels} \
    && rm -rf /tmp/build

# Freeze the plugins' entry points beside lambda_entry.py: a cold start reads this one file instead
# of scanning the metadata of every installed distribution. Run it again after installing anything
# else (a start that finds it stale scans as before).
RUN letsgo-worker plugins --freeze

# The Lambda runtime imports lambda_entry from site-packages and calls handler(event, context).
CMD ["lambda_entry.handler"]
