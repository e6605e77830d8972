# letsgo-worker as an AWS Lambda container image. `sam build` builds it for template.yaml;
# by hand: docker build -t letsgo-worker . (see docs/aws.md).
FROM public.ecr.aws/lambda/python:3.11

# Plugins to bake into the image, as paths in this repository. Add your own here
# (or install them from an index in the RUN line below).
ARG PLUGINS="plugins/letsgo_stripe plugins/letsgo_slack plugins/example_orders"

# Install the host and the plugins as regular (non-editable) distributions into the
# image's site-packages, at the versions pinned in constraints.txt, then drop the sources.
COPY pyproject.toml README.md LICENSE constraints.txt lambda_entry.py server.py /tmp/build/
COPY host /tmp/build/host
COPY plugins /tmp/build/plugins
RUN cd /tmp/build \
    && pip install --no-cache-dir --disable-pip-version-check -c constraints.txt ".[aws]" ${PLUGINS} \
    && rm -rf /tmp/build

# Freeze the plugins' entry points beside lambda_entry.py: a cold start reads this one file instead
# of scanning the metadata of every installed distribution. Run it again after installing anything
# else (a start that finds it stale scans as before).
RUN letsgo-worker plugins --freeze

# The Lambda runtime imports lambda_entry from site-packages and calls handler(event, context).
CMD ["lambda_entry.handler"]
