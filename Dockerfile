# letsgo-worker as an AWS Lambda container image. `sam build` builds it for template.yaml;
# by hand: docker build -t letsgo-worker . (see docs/aws.md).
FROM public.ecr.aws/lambda/python:3.11

# Plugins to bake into the image, from any mix of three sources (docs/deploy-plugins.md):
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
